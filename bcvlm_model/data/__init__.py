"""Mammography data layer: DICOM decoding and preprocessing, the manifest schema, adapters, cache and synthetic cohort."""
