"""BullMQ queues: the four queue classes, submitting executions, cancelling pending ones."""
