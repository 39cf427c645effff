"""Reading images and masks, preprocessing."""
