"""Task stores: archives of finished tasks and the hybrid queue that reads through them."""
