"""The end-to-end demo: build a small corpus, score, train and score again."""
