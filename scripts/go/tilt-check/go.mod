// The Tiltfile checker (main.go): evaluates the repository's Tiltfile with
// go.starlark.net, the interpreter Tilt itself embeds, so the dialect is Tilt's.
module polystream.local/tilt-check

go 1.26.0

require go.starlark.net v0.0.0-20260908191801-89a6a09411d5

require golang.org/x/sys v0.42.0 // indirect
