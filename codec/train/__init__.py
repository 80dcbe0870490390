"""Image to bytes: the training loop and everything only an encoder needs; imports format/ and decode/, never the reverse."""
