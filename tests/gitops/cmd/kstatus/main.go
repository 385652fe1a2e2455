// Command kstatus computes the kstatus (sigs.k8s.io/cli-utils/pkg/kstatus/status) of
// Kubernetes objects, as Flux's health checks (`wait: true`) and `kubectl` tooling
// built on cli-utils do. It reads JSON from standard input, either one object or a
// List (`kubectl get -o json`), and prints one JSON line per object:
//
//	{"namespace":"...","name":"...","status":"Current","message":"..."}
//
// Exit status 1 on bad input or when kstatus cannot compute a status.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type line struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Status    string `json:"status"`
	Message   string `json:"message"`
}

func main() {
	if err := run(os.Stdin, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus:", err)
		os.Exit(1)
	}
}

func run(in io.Reader, out io.Writer) error {
	data, err := io.ReadAll(in)
	if err != nil {
		return fmt.Errorf("reading standard input: %w", err)
	}
	var top unstructured.Unstructured
	if err := top.UnmarshalJSON(data); err != nil {
		return fmt.Errorf("standard input is not a Kubernetes object or List: %w", err)
	}
	objects := []unstructured.Unstructured{top}
	if top.IsList() {
		list, err := top.ToList()
		if err != nil {
			return fmt.Errorf("reading the List: %w", err)
		}
		objects = list.Items
	}
	enc := json.NewEncoder(out)
	for i := range objects {
		obj := &objects[i]
		result, err := status.Compute(obj)
		if err != nil {
			return fmt.Errorf("%s/%s: %w", obj.GetNamespace(), obj.GetName(), err)
		}
		if err := enc.Encode(line{
			Namespace: obj.GetNamespace(),
			Name:      obj.GetName(),
			Status:    result.Status.String(),
			Message:   result.Message,
		}); err != nil {
			return err
		}
	}
	return nil
}
