"""What the data pipeline, model surgery and training share: option files and the tokenizer loader.

The lowest layer: it imports neither ``spark_jobs`` nor ``pyspark``, so a training host needs neither.
"""
