"""Labels after the fact: answers kept for a while, labels sent back, examples to retrain on."""
