"""`harness check`, the regression gate (`check`), and its baseline file (`baseline`)."""
