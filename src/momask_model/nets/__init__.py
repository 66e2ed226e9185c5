"""The networks of MoMask (design/momask.md §2-§5): the residual VQ-VAE and its quantizer, the masked and
residual transformers with their shared pieces, masking recipe and fused fast path, and the length estimator.

Each is a plain ``nn.Module`` built from its frozen config; generation logic lives in ``generation``.
"""
from momask_model.nets.length import LengthEstimator
from momask_model.nets.masked import MaskTransformer
from momask_model.nets.quantizer import ResidualQuantizer
from momask_model.nets.residual import ResidualTransformer
from momask_model.nets.vq import RVQVAE

__all__ = ["LengthEstimator", "MaskTransformer", "RVQVAE", "ResidualQuantizer", "ResidualTransformer"]
