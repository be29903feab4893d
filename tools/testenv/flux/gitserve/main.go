// gitserve: serve the git repositories under a directory over smart HTTP, read-only, on
// a loopback address, for Flux's source-controller in tests. It is `git http-backend`
// (the git binary on PATH) behind the standard library's CGI handler: no other code.
//
//	gitserve -root DIR [-addr 127.0.0.1:0] [-addr-file FILE]
//
// DIR/NAME.git (bare) is served as http://ADDR/NAME.git. Pushes are refused. With
// -addr-file, the address it listens on is written there once it is listening (so
// -addr 127.0.0.1:0 picks a free port).
package main

import (
	"flag"
	"log"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

func main() {
	root := flag.String("root", "", "directory holding the bare repositories (NAME.git)")
	addr := flag.String("addr", "127.0.0.1:0", "listen address (loopback only)")
	addrFile := flag.String("addr-file", "", "write the listen address here once listening")
	flag.Parse()
	if *root == "" {
		log.Fatal("gitserve: -root is required")
	}
	dir, err := filepath.Abs(*root)
	if err != nil {
		log.Fatal(err)
	}
	host, _, err := net.SplitHostPort(*addr)
	if err != nil {
		log.Fatal(err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		log.Fatalf("gitserve: %s is not a loopback address", *addr)
	}
	git, err := exec.LookPath("git")
	if err != nil {
		log.Fatal("gitserve: no git on PATH: ", err)
	}
	backend := &cgi.Handler{
		Path: git,
		Args: []string{"http-backend"},
		Env: []string{
			"GIT_PROJECT_ROOT=" + dir,
			"GIT_HTTP_EXPORT_ALL=1",
			"HOME=" + dir, // no user config
		},
		InheritEnv: []string{"PATH"},
	}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Read-only: no receive-pack (push).
		if strings.HasSuffix(r.URL.Path, "/git-receive-pack") || r.URL.Query().Get("service") == "git-receive-pack" {
			http.Error(w, "read-only", http.StatusForbidden)
			return
		}
		log.Printf("%s %s", r.Method, r.URL.RequestURI())
		backend.ServeHTTP(w, r)
	})
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	if *addrFile != "" {
		tmp := *addrFile + ".tmp"
		if err := os.WriteFile(tmp, []byte(ln.Addr().String()+"\n"), 0o644); err != nil {
			log.Fatal(err)
		}
		if err := os.Rename(tmp, *addrFile); err != nil {
			log.Fatal(err)
		}
	}
	log.Printf("gitserve: serving %s on http://%s/", dir, ln.Addr())
	log.Fatal(http.Serve(ln, h))
}
