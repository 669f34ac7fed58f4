"""Workers: BullMQ Workers feeding the executor, with persistence and graceful shutdown."""
