"""Limits of the platforms mlpack ships to: each defined here once, and only here."""

from __future__ import annotations

from .sizes import format_size

# AWS Lambda quotas (https://docs.aws.amazon.com/lambda/latest/dg/gettingstarted-limits.html).
LAMBDA_ZIP_LIMIT = 50 * 2**20  # a .zip uploaded directly (CreateFunction/UpdateFunctionCode)
LAMBDA_UNZIPPED_LIMIT = 250 * 2**20  # the function's code and layers, unzipped
LAMBDA_ZIP_LIMIT_TEXT = format_size(LAMBDA_ZIP_LIMIT)
LAMBDA_UNZIPPED_LIMIT_TEXT = format_size(LAMBDA_UNZIPPED_LIMIT)
