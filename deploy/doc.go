// Package deploy holds no code: it is how flashsale is run outside `make run`
// (cluster.sh, the systemd units, the container image, the Prometheus
// configuration), and its tests check those files against the real tools
// (systemd-analyze, podman).
package deploy
