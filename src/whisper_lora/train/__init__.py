"""LoRA fine-tuning: training examples, the collator and the trainer."""
