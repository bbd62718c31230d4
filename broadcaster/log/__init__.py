"""Keep the site's witnessed transparency log (C2SP tlog-tiles, checkpoints, cosignatures).

One module per concept: ``merkle`` (RFC 6962 hashing and proofs), ``tiles`` (the
tiled layout), ``note`` (signed notes), ``checkpoint``, ``cosignature``,
``witness`` (the witness server), ``client`` (asking a witness to cosign).
Nothing here touches a database: the store feeds hashes in through small
reader callables, so the same code serves SQLite, PostgreSQL and a client that
fetched tiles over HTTP.
"""
