"""The dashboard's HTML escapes what users control, and its charts scale to their data."""

from __future__ import annotations

from sessionward.capacity import DeploymentView, Sample
from sessionward.service.admin.charts import line_chart
from sessionward.service.admin.pages import instances_table, user_panel
from sessionward.sessions import Session


def test_a_session_s_device_and_ip_are_escaped() -> None:
    session = Session("s<1>", "u1", 1.0, 2.0, 3.0, 4.0, '"><img src=x>', "<script>x</script>",
                      {}, 1)  # fmt: skip
    html = user_panel("ann", "u1", [session], [], "t0k")
    assert "<script>" not in html and "<img" not in html
    assert "&lt;script&gt;" in html and "s&lt;1&gt;" in html
    assert 'name="csrf" value="t0k"' in html


def test_instances_and_charts() -> None:
    view = DeploymentView((Sample("a<b", 1.0, memory_used=1, memory_limit=4),))
    assert "a&lt;b" in instances_table(view) and "25.0%" in instances_table(view)
    svg = line_chart("CPU", [(0.0, 0.0), (5.0, 50.0), (10.0, 100.0)], "%")
    assert 'points="4.0,86.0 160.0,45.0 316.0,4.0"' in svg and "<b>100%</b>" in svg
    assert "no data yet" in line_chart("CPU", [])
