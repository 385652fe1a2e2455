// Command argocd-lua runs Argo CD resource customizations (health.lua, actions) with
// the Lua interpreter Argo CD embeds (github.com/yuin/gopher-lua), set up the way
// Argo CD sets it up by default: only the package, base and table libraries plus a
// "safe" os library with just os.time and os.date, no string library, `obj` as a
// global, and a one-second time limit. A script that works here therefore works in
// Argo CD, and one that leans on a library Argo CD withholds fails here too.
//
//	argocd-lua test DIR         run DIR/health_test.yaml and DIR/actions/action_test.yaml
//	                            (Argo CD's resource_customizations layout)
//	argocd-lua health SCRIPT    print the health of the JSON object on standard input
//
// `test` prints one line per case and a closing "N passed, N failed" line; it exits 1
// when a case fails.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"time"

	lua "github.com/yuin/gopher-lua"
	"sigs.k8s.io/yaml"
)

func main() {
	err := dispatch(os.Args[1:])
	if err != nil {
		fmt.Fprintln(os.Stderr, "argocd-lua:", err)
		os.Exit(1)
	}
}

func dispatch(args []string) error {
	switch {
	case len(args) == 2 && args[0] == "test":
		return runTests(args[1])
	case len(args) == 2 && args[0] == "health":
		return printHealth(args[1])
	default:
		return errors.New("usage: argocd-lua test DIR | argocd-lua health SCRIPT < object.json")
	}
}

// newState builds the interpreter as Argo CD's util/lua does without useOpenLibs.
func newState(obj map[string]interface{}) (*lua.LState, context.CancelFunc) {
	l := lua.NewState(lua.Options{SkipOpenLibs: true})
	for _, lib := range []struct {
		name string
		open lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
	} {
		l.Push(l.NewFunction(lib.open))
		l.Push(lua.LString(lib.name))
		l.Call(1, 0)
	}
	safeOs := safeOsTable(l)
	l.SetGlobal(lua.OsLibName, safeOs)
	l.PreloadModule(lua.OsLibName, func(l *lua.LState) int {
		l.Push(safeOsTable(l))
		return 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	l.SetContext(ctx)
	l.SetGlobal("obj", toLua(l, obj))
	return l, cancel
}

// safeOsTable is gopher-lua's os library reduced to time and date, as Argo CD's.
func safeOsTable(l *lua.LState) *lua.LTable {
	scratch := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer scratch.Close()
	lua.OpenOs(scratch)
	osMod := scratch.GetGlobal(lua.OsLibName)
	safe := l.NewTable()
	if t, ok := osMod.(*lua.LTable); ok {
		for _, name := range []string{"time", "date"} {
			if fn, ok := t.RawGetString(name).(*lua.LFunction); ok && fn.GFunction != nil {
				safe.RawSetString(name, l.NewFunction(fn.GFunction))
			}
		}
	}
	return safe
}

// toLua converts decoded JSON the way Argo CD's decodeValue does.
func toLua(l *lua.LState, v interface{}) lua.LValue {
	switch v := v.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(v)
	case string:
		return lua.LString(v)
	case float64:
		return lua.LNumber(v)
	case int64:
		return lua.LNumber(float64(v))
	case json.Number:
		f, _ := v.Float64()
		return lua.LNumber(f)
	case []interface{}:
		t := l.NewTable()
		for i, item := range v {
			t.RawSetInt(i+1, toLua(l, item))
		}
		return t
	case map[string]interface{}:
		t := l.NewTable()
		for key, item := range v {
			t.RawSetString(key, toLua(l, item))
		}
		return t
	default:
		return lua.LString(fmt.Sprint(v))
	}
}

// fromLua converts a Lua value back to JSON-like Go values. A table whose keys are
// exactly 1..n is an array; an empty table is an object.
func fromLua(v lua.LValue) interface{} {
	switch v := v.(type) {
	case *lua.LNilType:
		return nil
	case lua.LBool:
		return bool(v)
	case lua.LString:
		return string(v)
	case lua.LNumber:
		return float64(v)
	case *lua.LTable:
		keys := 0
		v.ForEach(func(lua.LValue, lua.LValue) { keys++ })
		if n := v.MaxN(); n > 0 && n == keys {
			out := make([]interface{}, 0, n)
			for i := 1; i <= n; i++ {
				out = append(out, fromLua(v.RawGetInt(i)))
			}
			return out
		}
		out := map[string]interface{}{}
		v.ForEach(func(k, item lua.LValue) { out[k.String()] = fromLua(item) })
		return out
	default:
		return v.String()
	}
}

// runScript runs script with obj as the global and returns its return value.
func runScript(script string, obj map[string]interface{}) (interface{}, error) {
	l, cancel := newState(obj)
	defer cancel()
	defer l.Close()
	if err := l.DoString(script); err != nil {
		return nil, err
	}
	return fromLua(l.Get(-1)), nil
}

type health struct {
	Status  string `json:"status"`
	Message string `json:"message,omitempty"`
}

var healthStatuses = map[string]bool{
	"Healthy": true, "Progressing": true, "Degraded": true,
	"Suspended": true, "Missing": true, "Unknown": true,
}

func computeHealth(script string, obj map[string]interface{}) (health, error) {
	out, err := runScript(script, obj)
	if err != nil {
		return health{}, err
	}
	table, ok := out.(map[string]interface{})
	if !ok {
		return health{}, fmt.Errorf("health.lua returned %T, not a table", out)
	}
	var h health
	h.Status, _ = table["status"].(string)
	h.Message, _ = table["message"].(string)
	if !healthStatuses[h.Status] {
		return health{}, fmt.Errorf("health.lua returned status %q, which Argo CD does not know", h.Status)
	}
	return h, nil
}

func printHealth(scriptPath string) error {
	script, err := os.ReadFile(scriptPath)
	if err != nil {
		return err
	}
	data, err := io.ReadAll(os.Stdin)
	if err != nil {
		return err
	}
	obj, err := decodeObject(data)
	if err != nil {
		return fmt.Errorf("standard input: %w", err)
	}
	h, err := computeHealth(string(script), obj)
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(h)
}

// decodeObject reads YAML or JSON into the JSON value model (float64 numbers).
func decodeObject(data []byte) (map[string]interface{}, error) {
	jsonData, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, err
	}
	var obj map[string]interface{}
	if err := json.Unmarshal(jsonData, &obj); err != nil {
		return nil, err
	}
	if obj == nil {
		return nil, errors.New("empty document")
	}
	return obj, nil
}

func readObject(path string) (map[string]interface{}, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	obj, err := decodeObject(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return obj, nil
}

// The file formats of Argo CD's resource_customizations tests.
type healthTests struct {
	Tests []struct {
		HealthStatus health `json:"healthStatus"`
		InputPath    string `json:"inputPath"`
	} `json:"tests"`
}

type discoveredAction struct {
	Name     string `json:"name"`
	Disabled bool   `json:"disabled,omitempty"`
}

type actionTests struct {
	DiscoveryTests []struct {
		InputPath string             `json:"inputPath"`
		Result    []discoveredAction `json:"result"`
	} `json:"discoveryTests"`
	ActionTests []struct {
		Action             string `json:"action"`
		InputPath          string `json:"inputPath"`
		ExpectedOutputPath string `json:"expectedOutputPath"`
	} `json:"actionTests"`
}

type tally struct{ passed, failed int }

func (t *tally) check(name string, err error) {
	if err != nil {
		t.failed++
		fmt.Printf("FAIL %s: %v\n", name, err)
		return
	}
	t.passed++
	fmt.Printf("ok   %s\n", name)
}

func readYAML(path string, into interface{}) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if err := yaml.UnmarshalStrict(data, into); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return nil
}

func runTests(dir string) error {
	var t tally
	found := false
	healthScript, err := os.ReadFile(filepath.Join(dir, "health.lua"))
	switch {
	case err == nil:
		found = true
		var tests healthTests
		if err := readYAML(filepath.Join(dir, "health_test.yaml"), &tests); err != nil {
			return err
		}
		if len(tests.Tests) == 0 {
			return errors.New("health_test.yaml has no tests")
		}
		for _, tc := range tests.Tests {
			t.check("health "+tc.InputPath, func() error {
				obj, err := readObject(filepath.Join(dir, tc.InputPath))
				if err != nil {
					return err
				}
				got, err := computeHealth(string(healthScript), obj)
				if err != nil {
					return err
				}
				if got != tc.HealthStatus {
					return fmt.Errorf("got %+v, want %+v", got, tc.HealthStatus)
				}
				return nil
			}())
		}
	case !errors.Is(err, os.ErrNotExist):
		return err
	}

	actionsDir := filepath.Join(dir, "actions")
	if _, err := os.Stat(filepath.Join(actionsDir, "action_test.yaml")); err == nil {
		found = true
		if err := runActionTests(actionsDir, &t); err != nil {
			return err
		}
	}
	if !found {
		return fmt.Errorf("%s has neither health.lua nor actions/action_test.yaml", dir)
	}
	fmt.Printf("%d passed, %d failed\n", t.passed, t.failed)
	if t.failed > 0 {
		return fmt.Errorf("%d case(s) failed", t.failed)
	}
	return nil
}

func runActionTests(dir string, t *tally) error {
	var tests actionTests
	if err := readYAML(filepath.Join(dir, "action_test.yaml"), &tests); err != nil {
		return err
	}
	if len(tests.DiscoveryTests) == 0 || len(tests.ActionTests) == 0 {
		return errors.New("action_test.yaml needs discoveryTests and actionTests")
	}
	discovery, err := os.ReadFile(filepath.Join(dir, "discovery.lua"))
	if err != nil {
		return err
	}
	for _, tc := range tests.DiscoveryTests {
		t.check("discovery "+tc.InputPath, func() error {
			obj, err := readObject(filepath.Join(dir, tc.InputPath))
			if err != nil {
				return err
			}
			out, err := runScript(string(discovery), obj)
			if err != nil {
				return err
			}
			got, err := discovered(out)
			if err != nil {
				return err
			}
			want := append([]discoveredAction{}, tc.Result...)
			sort.Slice(want, func(i, j int) bool { return want[i].Name < want[j].Name })
			if len(got) == 0 && len(want) == 0 {
				return nil
			}
			if !reflect.DeepEqual(got, want) {
				return fmt.Errorf("got %+v, want %+v", got, want)
			}
			return nil
		}())
	}
	for _, tc := range tests.ActionTests {
		t.check("action "+tc.Action+" "+tc.InputPath, func() error {
			script, err := os.ReadFile(filepath.Join(dir, tc.Action, "action.lua"))
			if err != nil {
				return err
			}
			obj, err := readObject(filepath.Join(dir, tc.InputPath))
			if err != nil {
				return err
			}
			out, err := runScript(string(script), obj)
			if err != nil {
				return err
			}
			result, ok := out.(map[string]interface{})
			if !ok {
				return fmt.Errorf("action.lua returned %T, not the object", out)
			}
			if err := normalizeTrigger(result); err != nil {
				return err
			}
			want, err := readObject(filepath.Join(dir, tc.ExpectedOutputPath))
			if err != nil {
				return err
			}
			if !reflect.DeepEqual(result, want) {
				gotYAML, _ := yaml.Marshal(result)
				wantYAML, _ := yaml.Marshal(want)
				return fmt.Errorf("output differs\n--- got\n%s--- want\n%s", gotYAML, wantYAML)
			}
			return nil
		}())
	}
	return nil
}

// discovered turns discovery.lua's table (action name -> {disabled = bool}) into a list
// sorted by name, as Argo CD shows it.
func discovered(out interface{}) ([]discoveredAction, error) {
	table, ok := out.(map[string]interface{})
	if !ok {
		if list, isList := out.([]interface{}); isList && len(list) == 0 {
			return nil, nil
		}
		return nil, fmt.Errorf("discovery.lua returned %T, not a table", out)
	}
	var actions []discoveredAction
	for name, props := range table {
		a := discoveredAction{Name: name}
		if p, ok := props.(map[string]interface{}); ok {
			a.Disabled, _ = p["disabled"].(bool)
		}
		actions = append(actions, a)
	}
	sort.Slice(actions, func(i, j int) bool { return actions[i].Name < actions[j].Name })
	return actions, nil
}

const (
	triggerAnnotation = "confluence-operator.io/sync-requested-at"
	// Expected outputs carry this instead of the wall-clock time the action writes.
	triggerPlaceholder = "0001-01-01T00:00:00Z"
)

var utcTime = regexp.MustCompile(`^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$`)

// normalizeTrigger checks that the trigger annotation holds the current UTC time and
// replaces it with the placeholder, like Argo CD's test normalizer does for the time
// fields its own actions write.
func normalizeTrigger(obj map[string]interface{}) error {
	meta, _ := obj["metadata"].(map[string]interface{})
	annotations, _ := meta["annotations"].(map[string]interface{})
	value, ok := annotations[triggerAnnotation].(string)
	if !ok {
		return fmt.Errorf("the action did not set %s", triggerAnnotation)
	}
	if !utcTime.MatchString(value) {
		return fmt.Errorf("%s = %q is not a UTC time like 2006-01-02T15:04:05Z", triggerAnnotation, value)
	}
	at, err := time.Parse(time.RFC3339, value)
	if err != nil {
		return err
	}
	if d := time.Since(at); d < -time.Minute || d > time.Minute {
		return fmt.Errorf("%s = %q is not the current time", triggerAnnotation, value)
	}
	annotations[triggerAnnotation] = triggerPlaceholder
	return nil
}
