// tilt-check evaluates a Tiltfile the way Tilt does (go.starlark.net, Tilt's
// dialect options, paths relative to the Tiltfile) with the Tilt built-ins it
// uses replaced by stubs that record their arguments, and prints what it
// recorded as JSON. Tilt itself cannot be installed here; the checks on the
// record (paths exist, images have builds, dependencies exist, the build
// command succeeds, the YAML is accepted by an API server) are made by
// tests/chart/tests/dev_stack.rs.
//
// The stubs declare Tilt's documented parameter names, so a misspelt keyword
// or a built-in Tilt lacks fails here as it would in `tilt up`. local() runs
// its command for real (Tilt runs it while loading the Tiltfile);
// helm()/kustomize() only record their arguments: the test renders them with
// the same tools Tilt would call.
//
// Usage: tilt-check PATH/TO/Tiltfile
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
	"go.starlark.net/syntax"
)

type step struct {
	Kind    string   `json:"kind"` // sync, run, fall_back_on
	Src     string   `json:"src,omitempty"`
	Dest    string   `json:"dest,omitempty"`
	Cmd     string   `json:"cmd,omitempty"`
	Trigger []string `json:"trigger,omitempty"`
	Files   []string `json:"files,omitempty"`
}

type dockerBuild struct {
	Ref        string   `json:"ref"`
	Context    string   `json:"context"`
	Dockerfile string   `json:"dockerfile"`
	Only       []string `json:"only"`
	LiveUpdate []step   `json:"live_update"`
}

type link struct {
	URL  string `json:"url"`
	Name string `json:"name"`
}

type localResource struct {
	Name         string   `json:"name"`
	Cmd          string   `json:"cmd"`
	Dir          string   `json:"dir"`
	Deps         []string `json:"deps"`
	ResourceDeps []string `json:"resource_deps"`
	Labels       []string `json:"labels"`
}

type helmCall struct {
	Chart       string   `json:"chart"`
	Name        string   `json:"name"`
	Namespace   string   `json:"namespace"`
	Values      []string `json:"values"`
	Set         []string `json:"set"`
	KubeVersion string   `json:"kube_version"`
	SkipCRDs    bool     `json:"skip_crds"`
}

type kustomizeCall struct {
	Dir   string   `json:"dir"`
	Flags []string `json:"flags"`
}

// One k8s_yaml() input: a file, or a helm()/kustomize() render.
type yamlSource struct {
	File      string         `json:"file,omitempty"`
	Helm      *helmCall      `json:"helm,omitempty"`
	Kustomize *kustomizeCall `json:"kustomize,omitempty"`
}

type portForward struct {
	Local     int    `json:"local"`
	Container int    `json:"container"`
	Name      string `json:"name"`
	LinkPath  string `json:"link_path"`
}

type k8sResource struct {
	Workload     string        `json:"workload"`
	NewName      string        `json:"new_name"`
	Objects      []string      `json:"objects"`
	ResourceDeps []string      `json:"resource_deps"`
	PortForwards []portForward `json:"port_forwards"`
	Links        []link        `json:"links"`
	Labels       []string      `json:"labels"`
}

type k8sKind struct {
	Kind          string            `json:"kind"`
	APIVersion    string            `json:"api_version"`
	ImageJSONPath []string          `json:"image_json_path"`
	ImageObject   map[string]string `json:"image_object"`
	PodReadiness  string            `json:"pod_readiness"`
}

// A path the Tiltfile names, absolute, with the built-in that named it.
type pathRef struct {
	Builtin string `json:"builtin"`
	Path    string `json:"path"`
}

type report struct {
	Tiltfile       string          `json:"tiltfile"`
	AllowContexts  []string        `json:"allow_k8s_contexts"`
	Paths          []pathRef       `json:"paths"`
	DockerBuilds   []dockerBuild   `json:"docker_builds"`
	LocalResources []localResource `json:"local_resources"`
	K8sYAML        []yamlSource    `json:"k8s_yaml"`
	K8sResources   []k8sResource   `json:"k8s_resources"`
	K8sKinds       []k8sKind       `json:"k8s_kinds"`
}

var (
	rep  report
	base string // the Tiltfile's directory: Tilt resolves relative paths against it
)

func abs(p string) string {
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(base, p)
}

func notePath(builtin, p string) string {
	a := abs(p)
	rep.Paths = append(rep.Paths, pathRef{builtin, a})
	return a
}

// blob is Tilt's Blob: text from local(), helm() or kustomize().
type blob struct {
	text   string
	source *yamlSource
}

func (b *blob) String() string        { return b.text }
func (b *blob) Type() string          { return "blob" }
func (b *blob) Freeze()               {}
func (b *blob) Truth() starlark.Bool  { return starlark.True }
func (b *blob) Hash() (uint32, error) { return 0, fmt.Errorf("unhashable: blob") }

// step values returned by sync()/run()/fall_back_on(), consumed by docker_build.
type stepValue struct{ s step }

func (v *stepValue) String() string        { return "live_update step " + v.s.Kind }
func (v *stepValue) Type() string          { return "live_update_step" }
func (v *stepValue) Freeze()               {}
func (v *stepValue) Truth() starlark.Bool  { return starlark.True }
func (v *stepValue) Hash() (uint32, error) { return 0, fmt.Errorf("unhashable") }

type pfValue struct{ pf portForward }

func (v *pfValue) String() string        { return fmt.Sprintf("port_forward(%d)", v.pf.Local) }
func (v *pfValue) Type() string          { return "port_forward" }
func (v *pfValue) Freeze()               {}
func (v *pfValue) Truth() starlark.Bool  { return starlark.True }
func (v *pfValue) Hash() (uint32, error) { return 0, fmt.Errorf("unhashable") }

type linkValue struct{ l link }

func (v *linkValue) String() string        { return "link(" + v.l.URL + ")" }
func (v *linkValue) Type() string          { return "link" }
func (v *linkValue) Freeze()               {}
func (v *linkValue) Truth() starlark.Bool  { return starlark.True }
func (v *linkValue) Hash() (uint32, error) { return 0, fmt.Errorf("unhashable") }

// strs accepts a string or a list of strings (Tilt takes either almost everywhere).
func strs(v starlark.Value) ([]string, error) {
	switch x := v.(type) {
	case nil, starlark.NoneType:
		return nil, nil
	case starlark.String:
		return []string{string(x)}, nil
	case *starlark.List:
		out := make([]string, 0, x.Len())
		for i := 0; i < x.Len(); i++ {
			s, ok := starlark.AsString(x.Index(i))
			if !ok {
				return nil, fmt.Errorf("want a string, got %s", x.Index(i).Type())
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, fmt.Errorf("want a string or a list of strings, got %s", v.Type())
}

func listOf(v starlark.Value) []starlark.Value {
	switch x := v.(type) {
	case nil, starlark.NoneType:
		return nil
	case *starlark.List:
		out := make([]starlark.Value, x.Len())
		for i := range out {
			out[i] = x.Index(i)
		}
		return out
	}
	return []starlark.Value{v}
}

func links(v starlark.Value) ([]link, error) {
	var out []link
	for _, x := range listOf(v) {
		switch l := x.(type) {
		case starlark.String:
			out = append(out, link{URL: string(l)})
		case *linkValue:
			out = append(out, l.l)
		default:
			return nil, fmt.Errorf("links: want a URL or link(), got %s", x.Type())
		}
	}
	return out, nil
}

type builtinFn = func(*starlark.Thread, *starlark.Builtin, starlark.Tuple, []starlark.Tuple) (starlark.Value, error)

func fn(name string, f builtinFn) *starlark.Builtin { return starlark.NewBuiltin(name, f) }

func runLocal(cmd string) (string, error) {
	c := exec.Command("sh", "-c", cmd)
	c.Dir = base
	c.Stderr = os.Stderr
	out, err := c.Output()
	if err != nil {
		return "", fmt.Errorf("local(%q): %v", cmd, err)
	}
	return string(out), nil
}

func predeclared() starlark.StringDict {
	osPath := starlarkstruct.FromStringDict(starlarkstruct.Default, starlark.StringDict{
		"join": fn("os.path.join", func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kw []starlark.Tuple) (starlark.Value, error) {
			parts := make([]string, len(args))
			for i, a := range args {
				s, ok := starlark.AsString(a)
				if !ok {
					return nil, fmt.Errorf("%s: want strings", b.Name())
				}
				parts[i] = s
			}
			return starlark.String(filepath.Join(parts...)), nil
		}),
		"exists": fn("os.path.exists", func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kw []starlark.Tuple) (starlark.Value, error) {
			var p string
			if err := starlark.UnpackArgs(b.Name(), args, kw, "path", &p); err != nil {
				return nil, err
			}
			_, err := os.Stat(abs(p))
			return starlark.Bool(err == nil), nil
		}),
	})
	osMod := starlarkstruct.FromStringDict(starlarkstruct.Default, starlark.StringDict{
		"path": osPath,
		"getenv": fn("os.getenv", func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kw []starlark.Tuple) (starlark.Value, error) {
			var key string
			var def starlark.Value = starlark.None
			if err := starlark.UnpackArgs(b.Name(), args, kw, "key", &key, "default?", &def); err != nil {
				return nil, err
			}
			if v, ok := os.LookupEnv(key); ok {
				return starlark.String(v), nil
			}
			return def, nil
		}),
	})

	return starlark.StringDict{
		"os": osMod,
		"allow_k8s_contexts": fn("allow_k8s_contexts", func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kw []starlark.Tuple) (starlark.Value, error) {
			var contexts starlark.Value
			if err := starlark.UnpackArgs(b.Name(), args, kw, "contexts", &contexts); err != nil {
				return nil, err
			}
			cs, err := strs(contexts)
			rep.AllowContexts = append(rep.AllowContexts, cs...)
			return starlark.None, err
		}),
		"local": fn("local", func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kw []starlark.Tuple) (starlark.Value, error) {
			var cmd string
			var quiet, echoOff bool
			var cmdBat, dir string
			var env *starlark.Dict
			var stdin starlark.Value
			if err := starlark.UnpackArgs(b.Name(), args, kw, "command", &cmd, "quiet?", &quiet,
				"command_bat?", &cmdBat, "echo_off?", &echoOff, "env?", &env, "dir?", &dir, "stdin?", &stdin); err != nil {
				return nil, err
			}
			out, err := runLocal(cmd)
			if err != nil {
				return nil, err
			}
			return &blob{text: out}, nil
		}),
		"decode_json": fn("decode_json", func(t *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kw []starlark.Tuple) (starlark.Value, error) {
			var v starlark.Value
			if err := starlark.UnpackArgs(b.Name(), args, kw, "json", &v); err != nil {
				return nil, err
			}
			var text string
			switch x := v.(type) {
			case starlark.String:
				text = string(x)
			case *blob:
				text = x.text
			default:
				return nil, fmt.Errorf("decode_json: want a string or blob, got %s", v.Type())
			}
			var decoded any
			if err := json.Unmarshal([]byte(text), &decoded); err != nil {
				return nil, fmt.Errorf("decode_json: %v", err)
			}
			return toStarlark(decoded), nil
		}),
		"helm": fn("helm", func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kw []starlark.Tuple) (starlark.Value, error) {
			var chart, name, namespace, kubeVersion string
			var values, set starlark.Value
			var skipCRDs bool
			if err := starlark.UnpackArgs(b.Name(), args, kw, "paths", &chart, "name?", &name,
				"namespace?", &namespace, "values?", &values, "set?", &set,
				"kube_version?", &kubeVersion, "skip_crds?", &skipCRDs); err != nil {
				return nil, err
			}
			h := helmCall{Chart: notePath("helm", chart), Name: name, Namespace: namespace, KubeVersion: kubeVersion, SkipCRDs: skipCRDs}
			vs, err := strs(values)
			if err != nil {
				return nil, err
			}
			for _, v := range vs {
				h.Values = append(h.Values, notePath("helm values", v))
			}
			if h.Set, err = strs(set); err != nil {
				return nil, err
			}
			return &blob{source: &yamlSource{Helm: &h}}, nil
		}),
		"kustomize": fn("kustomize", func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kw []starlark.Tuple) (starlark.Value, error) {
			var dir string
			var bin, flags starlark.Value
			if err := starlark.UnpackArgs(b.Name(), args, kw, "pathToDir", &dir, "kustomize_bin?", &bin, "flags?", &flags); err != nil {
				return nil, err
			}
			fs, err := strs(flags)
			if err != nil {
				return nil, err
			}
			return &blob{source: &yamlSource{Kustomize: &kustomizeCall{Dir: notePath("kustomize", dir), Flags: fs}}}, nil
		}),
		"k8s_yaml": fn("k8s_yaml", func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kw []starlark.Tuple) (starlark.Value, error) {
			var yaml starlark.Value
			var allowDuplicates bool
			if err := starlark.UnpackArgs(b.Name(), args, kw, "yaml", &yaml, "allow_duplicates?", &allowDuplicates); err != nil {
				return nil, err
			}
			for _, v := range listOf(yaml) {
				switch x := v.(type) {
				case starlark.String:
					rep.K8sYAML = append(rep.K8sYAML, yamlSource{File: notePath("k8s_yaml", string(x))})
				case *blob:
					if x.source == nil {
						return nil, fmt.Errorf("k8s_yaml: only files, helm() and kustomize() are checked, not local() output")
					}
					rep.K8sYAML = append(rep.K8sYAML, *x.source)
				default:
					return nil, fmt.Errorf("k8s_yaml: want a path or blob, got %s", v.Type())
				}
			}
			return starlark.None, nil
		}),
		"k8s_kind": fn("k8s_kind", func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kw []starlark.Tuple) (starlark.Value, error) {
			var k k8sKind
			var paths starlark.Value
			var object *starlark.Dict
			if err := starlark.UnpackArgs(b.Name(), args, kw, "kind", &k.Kind, "api_version?", &k.APIVersion,
				"image_json_path?", &paths, "image_object?", &object, "pod_readiness?", &k.PodReadiness); err != nil {
				return nil, err
			}
			var err error
			if k.ImageJSONPath, err = strs(paths); err != nil {
				return nil, err
			}
			if object != nil {
				k.ImageObject = map[string]string{}
				for _, item := range object.Items() {
					key, _ := starlark.AsString(item[0])
					val, _ := starlark.AsString(item[1])
					k.ImageObject[key] = val
				}
			}
			rep.K8sKinds = append(rep.K8sKinds, k)
			return starlark.None, nil
		}),
		"sync": fn("sync", func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kw []starlark.Tuple) (starlark.Value, error) {
			var src, dest string
			if err := starlark.UnpackArgs(b.Name(), args, kw, "local_path", &src, "remote_path", &dest); err != nil {
				return nil, err
			}
			return &stepValue{step{Kind: "sync", Src: notePath("sync", src), Dest: dest}}, nil
		}),
		"run": fn("run", func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kw []starlark.Tuple) (starlark.Value, error) {
			var cmd string
			var trigger starlark.Value
			var echoOff bool
			if err := starlark.UnpackArgs(b.Name(), args, kw, "cmd", &cmd, "trigger?", &trigger, "echo_off?", &echoOff); err != nil {
				return nil, err
			}
			ts, err := strs(trigger)
			if err != nil {
				return nil, err
			}
			s := step{Kind: "run", Cmd: cmd}
			for _, t := range ts {
				s.Trigger = append(s.Trigger, notePath("run trigger", t))
			}
			return &stepValue{s}, nil
		}),
		"docker_build": fn("docker_build", func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kw []starlark.Tuple) (starlark.Value, error) {
			var d dockerBuild
			dockerfile := "Dockerfile"
			var buildArgs *starlark.Dict
			var dockerfileContents, target, network, extraTag, platform string
			var liveUpdate, only, ignore, entrypoint, secret, ssh, cacheFrom, extraHosts, containerArgs starlark.Value
			var matchInEnvVars, pull bool
			if err := starlark.UnpackArgs(b.Name(), args, kw, "ref", &d.Ref, "context", &d.Context,
				"build_args?", &buildArgs, "dockerfile?", &dockerfile, "dockerfile_contents?", &dockerfileContents,
				"live_update?", &liveUpdate, "match_in_env_vars?", &matchInEnvVars, "ignore?", &ignore,
				"only?", &only, "entrypoint?", &entrypoint, "target?", &target, "ssh?", &ssh,
				"network?", &network, "secret?", &secret, "extra_tag?", &extraTag,
				"container_args?", &containerArgs, "cache_from?", &cacheFrom, "pull?", &pull,
				"platform?", &platform, "extra_hosts?", &extraHosts); err != nil {
				return nil, err
			}
			d.Context = notePath("docker_build context", d.Context)
			d.Dockerfile = notePath("docker_build dockerfile", dockerfile)
			onlyList, err := strs(only)
			if err != nil {
				return nil, err
			}
			for _, o := range onlyList {
				d.Only = append(d.Only, o)
				rep.Paths = append(rep.Paths, pathRef{"docker_build only", filepath.Join(d.Context, o)})
			}
			for _, v := range listOf(liveUpdate) {
				s, ok := v.(*stepValue)
				if !ok {
					return nil, fmt.Errorf("live_update: want sync()/run() steps, got %s", v.Type())
				}
				d.LiveUpdate = append(d.LiveUpdate, s.s)
			}
			rep.DockerBuilds = append(rep.DockerBuilds, d)
			return starlark.None, nil
		}),
		"local_resource": fn("local_resource", func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kw []starlark.Tuple) (starlark.Value, error) {
			var r localResource
			var cmd, deps, ignore, resourceDeps, links_, tags, labels, serveCmd, readiness starlark.Value
			var triggerMode int
			var autoInit, allowParallel = true, false
			var cmdBat, serveCmdBat, serveDir string
			var env, serveEnv *starlark.Dict
			if err := starlark.UnpackArgs(b.Name(), args, kw, "name", &r.Name, "cmd?", &cmd, "deps?", &deps,
				"trigger_mode?", &triggerMode, "resource_deps?", &resourceDeps, "ignore?", &ignore,
				"auto_init?", &autoInit, "serve_cmd?", &serveCmd, "cmd_bat?", &cmdBat,
				"serve_cmd_bat?", &serveCmdBat, "allow_parallel?", &allowParallel, "links?", &links_,
				"tags?", &tags, "env?", &env, "serve_env?", &serveEnv, "readiness_probe?", &readiness,
				"dir?", &r.Dir, "serve_dir?", &serveDir, "labels?", &labels); err != nil {
				return nil, err
			}
			if c, ok := starlark.AsString(cmd); ok {
				r.Cmd = c
			} else if cs, err := strs(cmd); err == nil {
				r.Cmd = strings.Join(cs, " ")
			}
			if r.Dir == "" {
				r.Dir = base
			} else {
				r.Dir = notePath("local_resource dir", r.Dir)
			}
			ds, err := strs(deps)
			if err != nil {
				return nil, err
			}
			for _, d := range ds {
				r.Deps = append(r.Deps, notePath("local_resource deps", d))
			}
			if r.ResourceDeps, err = strs(resourceDeps); err != nil {
				return nil, err
			}
			if r.Labels, err = strs(labels); err != nil {
				return nil, err
			}
			rep.LocalResources = append(rep.LocalResources, r)
			return starlark.None, nil
		}),
		"port_forward": fn("port_forward", func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kw []starlark.Tuple) (starlark.Value, error) {
			var pf portForward
			var host string
			if err := starlark.UnpackArgs(b.Name(), args, kw, "local_port", &pf.Local, "container_port?", &pf.Container,
				"name?", &pf.Name, "link_path?", &pf.LinkPath, "host?", &host); err != nil {
				return nil, err
			}
			if pf.Container == 0 {
				pf.Container = pf.Local
			}
			return &pfValue{pf}, nil
		}),
		"link": fn("link", func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kw []starlark.Tuple) (starlark.Value, error) {
			var l link
			if err := starlark.UnpackArgs(b.Name(), args, kw, "url", &l.URL, "name?", &l.Name); err != nil {
				return nil, err
			}
			return &linkValue{l}, nil
		}),
		"k8s_resource": fn("k8s_resource", func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kw []starlark.Tuple) (starlark.Value, error) {
			var r k8sResource
			var portForwards, extraPodSelectors, resourceDeps, objects, links_, labels starlark.Value
			var triggerMode int
			autoInit := true
			var podReadiness, discovery string
			if err := starlark.UnpackArgs(b.Name(), args, kw, "workload?", &r.Workload, "new_name?", &r.NewName,
				"port_forwards?", &portForwards, "extra_pod_selectors?", &extraPodSelectors,
				"trigger_mode?", &triggerMode, "resource_deps?", &resourceDeps, "objects?", &objects,
				"auto_init?", &autoInit, "pod_readiness?", &podReadiness, "links?", &links_,
				"labels?", &labels, "discovery_strategy?", &discovery); err != nil {
				return nil, err
			}
			for _, v := range listOf(portForwards) {
				switch p := v.(type) {
				case *pfValue:
					r.PortForwards = append(r.PortForwards, p.pf)
				case starlark.Int:
					n, _ := p.Int64()
					r.PortForwards = append(r.PortForwards, portForward{Local: int(n), Container: int(n)})
				default:
					return nil, fmt.Errorf("port_forwards: want port_forward() or an int, got %s", v.Type())
				}
			}
			var err error
			if r.ResourceDeps, err = strs(resourceDeps); err != nil {
				return nil, err
			}
			if r.Objects, err = strs(objects); err != nil {
				return nil, err
			}
			if r.Links, err = links(links_); err != nil {
				return nil, err
			}
			if r.Labels, err = strs(labels); err != nil {
				return nil, err
			}
			rep.K8sResources = append(rep.K8sResources, r)
			return starlark.None, nil
		}),
		"watch_file": fn("watch_file", func(_ *starlark.Thread, b *starlark.Builtin, args starlark.Tuple, kw []starlark.Tuple) (starlark.Value, error) {
			var p string
			if err := starlark.UnpackArgs(b.Name(), args, kw, "path", &p); err != nil {
				return nil, err
			}
			notePath("watch_file", p)
			return starlark.None, nil
		}),
		"TRIGGER_MODE_AUTO":   starlark.MakeInt(0),
		"TRIGGER_MODE_MANUAL": starlark.MakeInt(1),
	}
}

func toStarlark(v any) starlark.Value {
	switch x := v.(type) {
	case nil:
		return starlark.None
	case bool:
		return starlark.Bool(x)
	case float64:
		if x == float64(int64(x)) {
			return starlark.MakeInt64(int64(x))
		}
		return starlark.Float(x)
	case string:
		return starlark.String(x)
	case []any:
		l := make([]starlark.Value, len(x))
		for i, e := range x {
			l[i] = toStarlark(e)
		}
		return starlark.NewList(l)
	case map[string]any:
		d := starlark.NewDict(len(x))
		for k, e := range x {
			_ = d.SetKey(starlark.String(k), toStarlark(e))
		}
		return d
	}
	return starlark.None
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: tilt-check PATH/TO/Tiltfile")
		os.Exit(2)
	}
	path, err := filepath.Abs(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	base = filepath.Dir(path)
	rep.Tiltfile = path
	src, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	// Tilt's dialect: top-level if/for, while, set(), global reassignment, recursion.
	opts := &syntax.FileOptions{Set: true, While: true, TopLevelControl: true, GlobalReassign: true, Recursion: true}
	thread := &starlark.Thread{Name: "Tiltfile", Print: func(_ *starlark.Thread, msg string) { fmt.Fprintln(os.Stderr, msg) }}
	if _, err := starlark.ExecFileOptions(opts, thread, path, src, predeclared()); err != nil {
		if e, ok := err.(*starlark.EvalError); ok {
			fmt.Fprintln(os.Stderr, e.Backtrace())
		} else {
			fmt.Fprintln(os.Stderr, err)
		}
		os.Exit(1)
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(rep); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
