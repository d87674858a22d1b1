"""The pack stage: tokenize cleaned documents and pack them into fixed-length sequences (``packed/``)."""
