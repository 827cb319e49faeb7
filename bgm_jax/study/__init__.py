"""The paper's user study (supplement F, Figures 4-7) as a tool: a blinded A/B rating page and its report.

Raters see an original image and two results, one from method A and one from method B, placed left and
right at random, and rate on a five-level scale which is better. Scores are stored from the methods'
point of view: -10 = A much better, -5 = A slightly better, 0 = similar, +5 / +10 = B slightly / much
better (the paper's A was BGM, its B "Ours", its overall average 3.1).

One module per job (import the one you need; only ``app`` needs the ``study`` extra, Starlette):

- ``scale``: the five levels, their labels, and the score a choice on the page stands for;
- ``blinding``: which side method A is shown on and the order of the examples, per rater, from the
  study's secret; un-blinding a choice into a score;
- ``pairing``: originals and the two methods' results paired by relative path, validated up front;
- ``storage``: the study file (SQLite, WAL): examples, settings and votes, one vote per rater and example;
- ``app``: the web page and its JSON API (Starlette), serving only the study's registered images;
- ``report``: per-example means, the overall mean with a bootstrap interval, per-rater counts; CSV,
  JSON and a PNG chart.

See docs/study.md.
"""
