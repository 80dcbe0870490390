"""``EncodeRun``, the encoder's phase-by-phase seam (bench.quantisation_loss): the same bytes as one call, and
renders between the phases that are what they say."""

import math

import numpy as np

import codec
from codec.options import EncodeOptions
from codec.train.encoder import EncodeRun, encode_array


def _psnr(image, target) -> float:
    return 10 * math.log10(1 / float((image.clamp(0, 1) - target).square().mean()))


def test_phase_by_phase_is_the_encode(crop):
    options = EncodeOptions(bpp=1.0, iterations=40, seed=0, device="cpu")
    run = EncodeRun(crop, options)
    assert np.array_equal((run.target * 255).round().byte().numpy(), crop)
    run.fit()
    fitted = run.fitted_inputs()
    run.quantise()
    quantised = run.quantised_inputs()
    assert [t.shape for t in quantised] == [t.shape for t in run.fitted_inputs()]
    assert all(not t.requires_grad for t in fitted + quantised)
    # Quantising costs the fitted render something, but not everything.
    assert 10 < _psnr(run.render(quantised), run.target) < _psnr(run.render(fitted), run.target)
    run.train_quantised()
    result = run.write()
    assert result.data == encode_array(crop, options).data
    # After the write, the quantised inputs draw what the decoder draws.
    decoded = codec.decode(result.data)
    assert abs(_psnr(run.render(run.quantised_inputs()), run.target) - codec.psnr(crop, decoded)) < 0.05


def test_every_render_of_an_encode_uses_the_backend_asked_for(crop, monkeypatch):
    import kernels
    from codec.options import BACKENDS
    from codec.train import encoder

    assert BACKENDS == kernels.BACKENDS
    backends = []

    def recording(*args, **kwargs):
        backends.append(args[8] if len(args) > 8 else kwargs.get("backend", "auto"))
        return kernels.render(*args, **kwargs)

    monkeypatch.setattr(encoder, "render", recording)
    run = EncodeRun(crop[:16, :24], EncodeOptions(bpp=1.0, iterations=6, device="cpu", backend="reference"))
    run.fit()
    run.quantise()
    run.train_quantised()
    run.render(run.quantised_inputs())
    assert len(backends) == 6 + 1 and set(backends) == {"reference"}
