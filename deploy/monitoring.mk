# Monitoring files: the Prometheus alert rules (deploy/prometheus), the Grafana dashboard
# (deploy/grafana) and docs/monitoring.md, checked against each other and against the metrics
# the daemons register.  Included by the top-level Makefile; `make lint` runs it.
#   promtool check rules   the rules parse and lint clean
#   promtool test rules    every alert fires in one case and stays silent in another
#   check_dashboard.py     valid JSON, queries parse, every metric queried exists, the
#                          documentation covers every metric and every alert's runbook
# promtool: Debian package prometheus (deploy/local/install-deps.sh).
PROMTOOL ?= promtool

# Included before the Makefile's own targets: this file must not become the default goal.
nc_monitoring_goal := $(.DEFAULT_GOAL)

.PHONY: check-monitoring
check-monitoring:
	$(PROMTOOL) check rules deploy/prometheus/noticecast.rules.yml
	cd deploy/prometheus && $(PROMTOOL) test rules noticecast.rules.test.yml
	python3 deploy/grafana/check_dashboard.py

.DEFAULT_GOAL := $(nc_monitoring_goal)
