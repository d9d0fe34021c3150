"""A 1D convolutional variational autoencoder for rest-frame quasar spectra.

Input: two channels on the rest grid (:mod:`desilab.anomalies.preprocess`) — the
normalised flux (0 where missing) and the "has data" indicator — so the encoder knows
which part of the grid a spectrum covers. Encoder: three stride-4 convolutions
(2→16→32→64 channels, kernel 9) and two dense layers to the mean and log-variance of a
128-d Gaussian latent. Decoder: dense layers back to 64×63 and three ×4 up-sampling steps
to 4000 pixels (cropped from 4032). Each up-sampling step is a *sub-pixel* convolution
(a kernel-3 convolution producing 4× the channels, then a reshape that interleaves them
along the pixel axis, the 1D "pixel shuffle" of Shi et al. 2016) rather than a stride-4
transposed convolution: the two are equally expressive (each output pixel sees 2–3 input
positions), but PyTorch's CPU transposed convolution does not take the oneDNN fast path,
and this one does (training epochs ~4× faster, the forward pass ~1.4× on CPU).

Likelihood: Gaussian with per-pixel variance ``1/ivar + s_j²``, where ``s_j`` is a
model-error amplitude per rest pixel (``exp(sigma_log) + sigma_floor``). Without it a
high-S/N spectrum always has χ²/pixel ≫ 1 (no model reproduces 1% structure), and
"anomalous" would come to mean "bright". It can be learned with the network
(``TrainConfig.learn_sigma``; the log-variance term keeps it bounded), but by default it
is held at ``sigma_init`` during training and re-measured per pixel on the training
spectra afterwards (:meth:`~desilab.anomalies.detector.VAEAnomalyDetector.fit`): learned
jointly, it grows where the decoder is poor and stops the decoder from improving there.

FLOPs per spectrum (forward, multiply-add = 2 FLOPs) are returned by :func:`flops_per_spectrum`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from desilab.anomalies.preprocess import REST_NPIX

__all__ = ["SpectrumVAE", "flops_per_spectrum", "gaussian_terms"]

_CH = (16, 32, 64)
_K = 9
_S = 4


def _conv_len(n: int) -> int:
    return (n + 2 * (_K // 2) - _K) // _S + 1


class PixelShuffle1d(nn.Module):
    """(n, c·r, L) → (n, c, L·r): channel groups of *r* become *r* neighbouring pixels."""

    def __init__(self, factor: int) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, length = x.shape
        r = self.factor
        return x.view(n, c // r, r, length).transpose(2, 3).reshape(n, c // r, length * r)


class SpectrumVAE(nn.Module):
    """Convolutional VAE over ``npix`` rest-frame pixels.

    Parameters
    ----------
    npix
        Pixels of the rest grid.
    latent_dim
        Latent dimension (128 by default, as in the project's plan).
    hidden
        Width of the dense layers.
    sigma_floor
        Minimum model-error amplitude (normalised flux units).
    sigma_init
        Initial learned model-error amplitude.
    """

    def __init__(
        self,
        npix: int = REST_NPIX,
        latent_dim: int = 128,
        hidden: int = 256,
        sigma_floor: float = 0.005,
        sigma_init: float = 0.05,
    ) -> None:
        super().__init__()
        self.npix = npix
        self.latent_dim = latent_dim
        self.sigma_floor = sigma_floor
        n1 = _conv_len(npix)
        n2 = _conv_len(n1)
        n3 = _conv_len(n2)
        self._n3 = n3
        act = nn.LeakyReLU(0.1, inplace=True)  # in place: one less activation-sized buffer per layer
        self.encoder = nn.Sequential(
            nn.Conv1d(2, _CH[0], _K, _S, _K // 2),
            act,
            nn.Conv1d(_CH[0], _CH[1], _K, _S, _K // 2),
            act,
            nn.Conv1d(_CH[1], _CH[2], _K, _S, _K // 2),
            act,
            nn.Flatten(),
            nn.Linear(_CH[2] * n3, hidden),
            act,
        )
        self.to_mu = nn.Linear(hidden, latent_dim)
        self.to_logvar = nn.Linear(hidden, latent_dim)
        self.dec_dense = nn.Sequential(nn.Linear(latent_dim, hidden), act, nn.Linear(hidden, _CH[2] * n3), act)
        self.dec_conv = nn.Sequential(
            nn.Conv1d(_CH[2], _CH[1] * _S, 3, 1, 1),
            PixelShuffle1d(_S),
            act,
            nn.Conv1d(_CH[1], _CH[0] * _S, 3, 1, 1),
            PixelShuffle1d(_S),
            act,
            nn.Conv1d(_CH[0], _S, 3, 1, 1),
            PixelShuffle1d(_S),
        )
        self.out_len = n3 * _S**3
        if self.out_len < npix:
            raise ValueError(f"decoder length {self.out_len} < npix {npix}")
        # learned model-error amplitude per pixel: exp(sigma_log) + floor
        # log-parametrised so that optimiser steps are relative: a softplus parameter started
        # at 0.05 moves by ~4e-5 per Adam step and stays where it started for a whole run
        self.sigma_log = nn.Parameter(torch.full((npix,), math.log(max(sigma_init - sigma_floor, 1e-4))))

    def model_sigma(self) -> torch.Tensor:
        """Model-error amplitude per pixel (npix,)."""
        return torch.exp(self.sigma_log) + self.sigma_floor

    def encode(self, flux: torch.Tensor, ivar: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Latent mean and log-variance, (n, latent_dim) each."""
        has = (ivar > 0).to(flux.dtype)
        h = self.encoder(torch.stack([flux * has, has], dim=1))
        return self.to_mu(h), self.to_logvar(h).clamp(-12.0, 8.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Reconstructed normalised flux (n, npix)."""
        h = self.dec_dense(z).view(z.shape[0], _CH[2], self._n3)
        return self.dec_conv(h)[:, 0, : self.npix]

    def forward(
        self, flux: torch.Tensor, ivar: torch.Tensor, generator: torch.Generator | None = None, sample: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Reconstruction, latent mean and log-variance.

        With *sample* the latent is drawn by the reparameterisation trick using *generator*
        (so the noise is reproducible and resumable); otherwise the mean is decoded.
        """
        mu, logvar = self.encode(flux, ivar)
        if sample:
            eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
            zlat = mu + eps * torch.exp(0.5 * logvar)
        else:
            zlat = mu
        return self.decode(zlat), mu, logvar


def gaussian_terms(
    flux: torch.Tensor, ivar: torch.Tensor, recon: torch.Tensor, sigma_model: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-spectrum χ², log-likelihood and number of used pixels.

    The variance of pixel j is ``1/ivar_j + sigma_model_j²``; pixels with ``ivar = 0`` are
    excluded. The log-likelihood includes ``-0.5 log(2π var)``.
    """
    w = ivar > 0
    var = torch.where(w, 1.0 / torch.where(w, ivar, torch.ones_like(ivar)), torch.ones_like(ivar)) + sigma_model**2
    r2 = (flux - recon) ** 2 / var
    wf = w.to(flux.dtype)
    chi2 = (r2 * wf).sum(dim=1)
    loglik = -0.5 * ((r2 + torch.log(2 * math.pi * var)) * wf).sum(dim=1)
    return chi2, loglik, wf.sum(dim=1)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) per spectrum."""
    return 0.5 * (mu**2 + logvar.exp() - 1.0 - logvar).sum(dim=1)


def flops_per_spectrum(model: SpectrumVAE) -> int:
    """Forward FLOPs of one spectrum (encoder + decoder, latent mean decoded).

    Counted by :class:`torch.utils.flop_counter.FlopCounterMode` (2 FLOPs per
    multiply-add of every convolution and matrix product; element-wise operations, a few
    per pixel, are not counted).
    """
    from torch.utils.flop_counter import FlopCounterMode

    f = torch.zeros((1, model.npix))
    iv = torch.ones((1, model.npix))
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        model(f, iv, sample=False)
    return int(counter.get_total_flops())
