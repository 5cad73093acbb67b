// Test data only: MetalLB's own CRDs (config/crd/bases of go.universe.tf/metallb), copied by
// scripts/kube-binaries.sh into target/go-bin/metallb-crds/ for the tests that install ferrolb
// where MetalLB's CRDs are already installed. No MetalLB code is built or linked.
module ferrolb.test/metallb-crds

go 1.26.0

require go.universe.tf/metallb v0.16.2
