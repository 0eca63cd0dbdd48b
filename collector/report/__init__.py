"""Reports over released rows: KPIs (``kpi``), funnels (``funnel``) and their intervals
(``intervals``), rendered by ``render`` as a terminal table or CSV (``text``), JSON, or one HTML
file (``html`` with ``svg`` charts)."""
