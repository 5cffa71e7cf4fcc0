"""Data: native-format readers, tokenizer, mixtures and the grain pipeline.

Entry point for the trainer::

    from elmjax.data import pipeline
    it = pipeline.make_train_iterator(cfg)   # grain DatasetIterator of [B, L] batches
"""
