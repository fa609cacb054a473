// Command controlplane is one multi-call binary holding everything the DR-Syncer e2e test bed
// runs per cluster: kube-apiserver, kube-controller-manager, kube-scheduler, etcd, plus kubectl
// for humans. One binary links the shared Kubernetes libraries once, which keeps the cold build
// on a small CI machine to a single (long) link instead of five.
//
// Dispatch: on the basename of argv[0] (symlinks named after each component), or, when called
// as "controlplane", on the first argument: `controlplane kube-apiserver --etcd-servers=...`.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"go.etcd.io/etcd/server/v3/etcdmain"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	kubectlutil "k8s.io/kubectl/pkg/cmd/util"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	kcm "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"

	_ "k8s.io/client-go/plugin/pkg/client/auth"
)

var components = []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "etcd"}

func main() {
	name := filepath.Base(os.Args[0])
	args := os.Args
	if !known(name) {
		if len(os.Args) < 2 || !known(os.Args[1]) {
			fmt.Fprintf(os.Stderr, "usage: controlplane {%v} [flags]\n", components)
			os.Exit(2)
		}
		name = os.Args[1]
		args = os.Args[1:]
	}
	// cobra commands read os.Args[1:]; make them see only the component's own arguments.
	os.Args = args
	os.Exit(run(name))
}

func known(name string) bool {
	for _, c := range components {
		if c == name {
			return true
		}
	}
	return false
}

func run(name string) int {
	switch name {
	case "kube-apiserver":
		return cli.Run(apiserver.NewAPIServerCommand())
	case "kube-controller-manager":
		return cli.Run(kcm.NewControllerManagerCommand())
	case "kube-scheduler":
		return cli.Run(scheduler.NewSchedulerCommand())
	case "kubectl":
		if err := cli.RunNoErrOutput(kubectlcmd.NewDefaultKubectlCommand()); err != nil {
			kubectlutil.CheckErr(err)
		}
		return 0
	case "etcd":
		etcdmain.Main(os.Args)
		return 0
	}
	return 2
}
