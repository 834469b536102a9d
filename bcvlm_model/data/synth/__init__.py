"""Synthetic mammography cohort: latent risk model, breast rendering, vendor styles and DICOM writing (`bcvlm synth`)."""
