"""Offline pretrained encoders: timm image backbone (EfficientNet-Lite0 ImageNet by default) and BERT-family text encoder."""

from bcvlm_model.encoders.image_backbone import ImageBackbone, build_image_backbone, create_timm_image_model
from bcvlm_model.encoders.text_encoder import load_text_encoder, load_tokenizer, resolve_text_encoder_path

__all__ = [
    "ImageBackbone",
    "build_image_backbone",
    "create_timm_image_model",
    "load_text_encoder",
    "load_tokenizer",
    "resolve_text_encoder_path",
]
