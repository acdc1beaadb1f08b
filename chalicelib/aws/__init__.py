"""The AWS boundary: clients built once per container, DynamoDB idioms, S3 objects, Lambda invoke,
the Management API sender. Vendor errors are translated here, once."""
