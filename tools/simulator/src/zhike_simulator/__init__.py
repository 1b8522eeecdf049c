"""A bank simulator for Zhike (`zhike simulate`): a seeded population of customers spread over
the source systems, their products and a stream of their activity, sent through the platform's
real doors (identity LinkSourceRecord, profile IngestSourceEvents)."""
