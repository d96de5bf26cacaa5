// helm-render renders a Helm chart the way `helm template` does, for checking a chart where
// Helm itself cannot be installed (Debian 12 does not package it). It uses what Helm uses:
// Go's text/template with Sprig's functions (Debian's golang-github-masterminds-sprig-dev) and
// Helm's own additions (include, tpl, required, toYaml, fromYaml, toJson, lookup), the
// .Values of values.yaml deep-merged with -f files, .Chart, .Release, .Files and .Template.
//
//	GO111MODULE=off GOPATH=/usr/share/gocode go run deploy/tools/helm-render/main.go \
//	    [-f values.yaml]... [--name RELEASE] [--namespace NS] [--notes] CHART_DIR
//
// Prints every rendered manifest as `helm template` does (a "# Source:" line each, empty
// ones left out), or only NOTES.txt with --notes. Not covered: subcharts, --set, the
// .Capabilities of a live cluster, lookup (always empty, as in `helm template`).
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig"
	yaml "gopkg.in/yaml.v2"
)

type valueFiles []string

func (v *valueFiles) String() string     { return strings.Join(*v, ",") }
func (v *valueFiles) Set(s string) error { *v = append(*v, s); return nil }

// Files is .Files: the chart's files that are not templates, by path relative to the chart.
type Files map[string][]byte

func (f Files) Get(name string) string { return string(f[name]) }
func (f Files) GetBytes(name string) []byte { return f[name] }

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "helm-render: "+format+"\n", args...)
	os.Exit(1)
}

// normalize turns yaml.v2's map[interface{}]interface{} into the map[string]interface{} that
// Helm's values are (and Sprig's dict functions expect), all the way down.
func normalize(v interface{}) interface{} {
	switch t := v.(type) {
	case map[interface{}]interface{}:
		m := make(map[string]interface{}, len(t))
		for k, val := range t {
			m[fmt.Sprint(k)] = normalize(val)
		}
		return m
	case map[string]interface{}:
		for k, val := range t {
			t[k] = normalize(val)
		}
		return t
	case []interface{}:
		for i, val := range t {
			t[i] = normalize(val)
		}
		return t
	}
	return v
}

func readYAML(path string) map[string]interface{} {
	data, err := os.ReadFile(path)
	if err != nil {
		fail("%v", err)
	}
	var v interface{}
	if err := yaml.Unmarshal(data, &v); err != nil {
		fail("%s: %v", path, err)
	}
	if v == nil {
		return map[string]interface{}{}
	}
	m, ok := normalize(v).(map[string]interface{})
	if !ok {
		fail("%s: the top level is not a mapping", path)
	}
	return m
}

// merge lays src over dst as Helm does: maps merge key by key, anything else replaces; a null
// in src deletes the key.
func merge(dst, src map[string]interface{}) map[string]interface{} {
	for k, sv := range src {
		if sv == nil {
			delete(dst, k)
			continue
		}
		sm, sIsMap := sv.(map[string]interface{})
		dm, dIsMap := dst[k].(map[string]interface{})
		if sIsMap && dIsMap {
			dst[k] = merge(dm, sm)
		} else {
			dst[k] = sv
		}
	}
	return dst
}

func toYAML(v interface{}) string {
	data, err := yaml.Marshal(v)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(data), "\n")
}

// chartMeta is .Chart with Helm's field names.
func chartMeta(m map[string]interface{}) map[string]interface{} {
	out := map[string]interface{}{}
	for k, v := range m {
		out[strings.ToUpper(k[:1])+k[1:]] = v
	}
	return out
}

func main() {
	var files valueFiles
	release, namespace, notes := "release", "default", false
	var chartDir string
	args := os.Args[1:]
	for i := 0; i < len(args); i++ {
		next := func() string {
			if i+1 >= len(args) {
				fail("%s needs a value", args[i])
			}
			i++
			return args[i]
		}
		switch args[i] {
		case "-f", "--values":
			files.Set(next())
		case "--name":
			release = next()
		case "--namespace", "-n":
			namespace = next()
		case "--notes":
			notes = true
		default:
			if strings.HasPrefix(args[i], "-") || chartDir != "" {
				fail("unexpected argument %q", args[i])
			}
			chartDir = args[i]
		}
	}
	if chartDir == "" {
		fail("usage: helm-render [-f values.yaml]... [--name R] [--namespace NS] [--notes] CHART_DIR")
	}

	chart := readYAML(filepath.Join(chartDir, "Chart.yaml"))
	name, _ := chart["name"].(string)
	if name == "" {
		fail("%s/Chart.yaml has no name", chartDir)
	}
	values := readYAML(filepath.Join(chartDir, "values.yaml"))
	for _, f := range files {
		values = merge(values, readYAML(f))
	}

	// Templates are named "<chart>/templates/<file>", as in Helm, so include and
	// .Template.BasePath work the same; the other files are .Files.
	chartFiles := Files{}
	var templateNames []string
	root := template.New("chart")
	funcs := sprig.TxtFuncMap()
	delete(funcs, "env")
	delete(funcs, "expandenv")
	funcs["include"] = func(string, interface{}) (string, error) { return "", nil }
	funcs["tpl"] = func(string, interface{}) (string, error) { return "", nil }
	funcs["required"] = func(msg string, v interface{}) (interface{}, error) {
		if v == nil {
			return nil, fmt.Errorf("%s", msg)
		}
		if s, ok := v.(string); ok && s == "" {
			return nil, fmt.Errorf("%s", msg)
		}
		return v, nil
	}
	funcs["toYaml"] = toYAML
	funcs["fromYaml"] = func(s string) map[string]interface{} {
		var v interface{}
		if err := yaml.Unmarshal([]byte(s), &v); err != nil {
			return map[string]interface{}{"Error": err.Error()}
		}
		m, _ := normalize(v).(map[string]interface{})
		return m
	}
	funcs["toJson"] = func(v interface{}) string {
		data, err := json.Marshal(v)
		if err != nil {
			return ""
		}
		return string(data)
	}
	funcs["lookup"] = func(string, string, string, string) (map[string]interface{}, error) {
		return map[string]interface{}{}, nil
	}
	root.Funcs(funcs).Option("missingkey=zero")

	err := filepath.Walk(chartDir, func(path string, info os.FileInfo, err error) error {
		if err != nil || info.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(chartDir, path)
		rel = filepath.ToSlash(rel)
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if !strings.HasPrefix(rel, "templates/") {
			chartFiles[rel] = data
			return nil
		}
		tname := name + "/" + rel
		if _, err := root.New(tname).Parse(string(data)); err != nil {
			return err
		}
		templateNames = append(templateNames, tname)
		return nil
	})
	if err != nil {
		fail("%v", err)
	}
	sort.Strings(templateNames)

	top := map[string]interface{}{
		"Values": values,
		"Chart":  chartMeta(chart),
		"Release": map[string]interface{}{
			"Name": release, "Namespace": namespace, "Service": "Helm",
			"IsInstall": true, "IsUpgrade": false, "Revision": 1,
		},
		"Files":        chartFiles,
		"Capabilities": map[string]interface{}{"KubeVersion": map[string]interface{}{"Version": "v1.30.0"}},
	}
	scope := func(tname string) map[string]interface{} {
		s := map[string]interface{}{}
		for k, v := range top {
			s[k] = v
		}
		s["Template"] = map[string]interface{}{"Name": tname, "BasePath": name + "/templates"}
		return s
	}
	// include and tpl need the template set itself, so they are bound after parsing.
	root.Funcs(template.FuncMap{
		"include": func(tname string, data interface{}) (string, error) {
			var buf bytes.Buffer
			err := root.ExecuteTemplate(&buf, tname, data)
			return buf.String(), err
		},
		"tpl": func(text string, data interface{}) (string, error) {
			t, err := root.Clone()
			if err != nil {
				return "", err
			}
			if _, err := t.New("tpl").Parse(text); err != nil {
				return "", err
			}
			var buf bytes.Buffer
			err = t.ExecuteTemplate(&buf, "tpl", data)
			return buf.String(), err
		},
	})

	var out strings.Builder
	for _, tname := range templateNames {
		base := filepath.Base(tname)
		isNotes := base == "NOTES.txt"
		if strings.HasPrefix(base, "_") || isNotes != notes {
			continue
		}
		var buf bytes.Buffer
		if err := root.ExecuteTemplate(&buf, tname, scope(tname)); err != nil {
			fail("%v", err)
		}
		text := strings.ReplaceAll(buf.String(), "<no value>", "")
		if notes {
			out.WriteString(text)
			continue
		}
		if strings.TrimSpace(text) == "" {
			continue
		}
		fmt.Fprintf(&out, "---\n# Source: %s\n%s\n", tname, strings.TrimSpace(text))
	}
	fmt.Print(out.String())
}
