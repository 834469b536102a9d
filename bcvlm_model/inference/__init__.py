"""Clinical inference: `bcvlm predict` on DICOM studies — exam grouping, aggregation, operating point, heatmaps."""
