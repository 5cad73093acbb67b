// Test data only: the Prometheus Operator's CRDs (example/prometheus-operator-crd of
// github.com/prometheus-operator/prometheus-operator), copied by scripts/kube-binaries.sh into
// target/go-bin/bin/prometheus-operator-crds/ for the test that installs the chart's PodMonitor,
// ServiceMonitor and PrometheusRule into the real API server. Nothing is built or linked.
module ferrolb.test/prometheus-operator-crds

go 1.26.0

require github.com/prometheus-operator/prometheus-operator v0.85.0
