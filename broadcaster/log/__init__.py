"""Make the record verifiable: the hash chain, signed checkpoints, the witnessed log, checks.

An incident's entries are hash-chained (``chain``) and its head signed
(``signing``). Every entry is also a leaf of the site's transparency log (C2SP
tlog-tiles), published under ``/log`` and cosigned by witnesses (``site``),
one module per concept: ``merkle`` (RFC 6962 hashing and proofs), ``tiles``
(the tiled layout), ``note`` (signed notes), ``checkpoint``, ``cosignature``,
``witness`` (the witness server), ``client`` (asking a witness to cosign).
What anyone runs to check it all: ``verify_timeline``, ``verify_log`` and
``fetch`` (``broadcaster verify``); ``archive`` and ``verify_archive`` (one
incident's record as a file, checked offline).

Nothing here touches a database: the store feeds hashes in through small
reader callables, so the same code serves SQLite, PostgreSQL and a client that
fetched tiles over HTTP.
"""
