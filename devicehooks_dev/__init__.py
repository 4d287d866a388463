"""devicehooks for developers and operators: the local stack, the CLI, development keys, test doubles.

Never shipped in the Lambda layer (template.yaml ships layers/common/ only).
"""
