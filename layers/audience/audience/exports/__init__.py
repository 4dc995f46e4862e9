"""Exports: contacts and the do-not-contact list written as CSV files to S3, downloaded by presigned URL."""
