"""train.strand_stats: how bright the strands are in training samples and test records."""

import numpy as np

from train import strand_stats

DATA = "generated:photo_matting/small:12"


def test_strand_shares_count_the_strand_and_the_pixel_grown_around_it():
    # A one-pixel vertical strand of 20 px at alpha 0.9: the 5x5 opening removes it all, and the band is
    # it grown by a pixel, 3 x 22 pixels, of which the 20 strand pixels are above 0.8.
    pha = np.zeros((1, 32, 32, 1), np.float32)
    pha[0, 6:26, 15] = 0.9
    shares = strand_stats.strand_shares(pha)
    assert shares["strand_px"] == 3 * 22
    assert shares["strand_above_0.6"] == shares["strand_above_0.8"] == 20 / 66
    assert shares["soft_above_0.6"] == 1.0  # all 20 soft pixels are at 0.9


def _rows(text):
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == 6 and cells[1].isdigit():
            rows[cells[0]] = [float(c.rstrip("%")) / 100 for c in cells[2:]]
    return rows


def test_a_warp_that_shrinks_the_foreground_dims_its_strands_and_the_affine_off_keeps_them(tmp_path, capsys):
    config = tmp_path / "shrink.py"
    config.write_text(
        "from train.configs.tiny import get_config as tiny\n"
        "def get_config():\n"
        f"    return tiny().replace(train_data='{DATA}', background_data='{DATA}', valid_data='{DATA}',\n"
        "                          sample_size=(128, 128), crop_size=None, fgr_scale=(0.55, 0.7), fgr_affine=1.0)\n")
    assert strand_stats.main(["--config", str(config), "--records", "12", "--keys", "2"]) == 0
    rows = _rows(capsys.readouterr().out)
    stored, warped, off, test = (rows[k] for k in rows)
    assert warped[0] < 0.85 * stored[0]  # strands above 0.6: fewer after the shrinking warp (0.73x measured)
    assert abs(off[0] - stored[0]) < 0.25 * stored[0]  # only flips, blur and sharpen left: about the same
    assert 0 < test[0] < 1


def test_a_missing_config_is_one_line_and_exit_2(tmp_path, capsys):
    assert strand_stats.main(["--config", str(tmp_path / "none.py")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("strand_stats: error:") and "none.py" in err and "\n" not in err
