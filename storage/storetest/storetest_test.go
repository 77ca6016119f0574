package storetest_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/caddy-session/caddy-session/storage"
	"github.com/caddy-session/caddy-session/storage/storetest"
)

// TestReference: a correct store passes the whole kit.
func TestReference(t *testing.T) {
	storetest.Run(t, func(*testing.T) storage.Store { return newRefStore("") })
}

// TestReferenceIndexer: a correct store passes the Indexer kit.
func TestReferenceIndexer(t *testing.T) {
	storetest.RunIndexer(t, func(*testing.T) storage.Store { return newRefStore("") })
}

// storeOnly hides a store's optional interfaces.
type storeOnly struct{ storage.Store }

// TestReferenceNoNewState: a store that keeps no New state (no Confirmer,
// New always false, no NewTTL cap) passes with Options.NoNewState.
func TestReferenceNoNewState(t *testing.T) {
	storetest.Options{NoNewState: true}.Run(t, func(*testing.T) storage.Store { return storeOnly{newRefStore("stateless")} })
}

// mutantStore returns the reference store with bug planted; the bug
// "no-confirmer" is a correct store that does not implement
// storage.Confirmer.
func mutantStore(bug string) storage.Store {
	switch bug {
	case "none":
		return newRefStore("")
	case "no-confirmer":
		return storeOnly{newRefStore("")}
	}
	return newRefStore(bug)
}

// mutantEnv names the bug a child process plants in its reference store.
const mutantEnv = "STORETEST_MUTANT"

// TestMutantChild runs the kit against a broken store; it only runs as a
// child of TestKitCatchesBugs, which expects it to fail.
func TestMutantChild(t *testing.T) {
	bug := os.Getenv(mutantEnv)
	if bug == "" {
		t.Skip("runs only as a child of TestKitCatchesBugs")
	}
	storetest.Run(t, func(*testing.T) storage.Store { return mutantStore(bug) })
}

// TestMutantIndexerChild is TestMutantChild for RunIndexer.
func TestMutantIndexerChild(t *testing.T) {
	bug := os.Getenv(mutantEnv)
	if bug == "" {
		t.Skip("runs only as a child of TestKitCatchesBugs")
	}
	storetest.RunIndexer(t, func(*testing.T) storage.Store { return mutantStore(bug) })
}

// TestKitCatchesBugs shows that every subtest of the kit can fail: for each
// one, a store with a bug it is meant to catch is run in a child process
// (a failing kit fails its test, which a parent test cannot contain), and
// the child must fail that subtest.
func TestKitCatchesBugs(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the kit in child processes")
	}
	mutants := []struct{ bug, subtest string }{
		{"none", ""},         // control: the harness itself passes a good store
		{"none", "Indexer/"}, // the same for RunIndexer
		{"load-missing-nil", "LoadMissing"},
		{"always-create", "MergeMissingWithoutCreate"},
		{"ignore-idle", "MergeCreate"},
		{"reset-deadline", "MergeSemantics"},
		{"replace-values", "MergeSemantics"},
		{"merge-no-renew", "MergeSemantics"},
		{"write-on-reject", "MergeRejected"},
		{"shared-map", "Isolation"},
		{"touch-unclamped", "Touch"},
		{"touch-creates", "Touch"},
		{"touch-ignored", "Touch"},
		{"delete-noop", "Delete"},
		{"rotate-copies", "Rotate"},
		{"rotate-missing-ok", "Rotate"},
		{"rotate-forgets", "RotationGrace"},
		{"version-ignored", "Versions"},
		{"expiry-kept", "InternalNames"},
		{"version-racy", "Versions"},
		{"version-not-bumped", "Versions"},
		{"delete-version-ignored", "Versions"},
		{"rotated-creates", "RotationGrace"},
		{"rotated-load-notfound", "RotationGrace"},
		{"small-values", "LargeValue"},
		{"tiny-capacity", "ManySessions"},
		{"lost-update", "ConcurrentMerge"},
		{"touch-rewrites", "ConcurrentMerge"},
		{"racy-create", "ConcurrentCreate"},
		{"exclusive-ignored", "ExclusiveCreate"},
		{"racy-exclusive", "ExclusiveCreate"},
		{"lost-update", "NoResurrectionAfterDelete"},
		{"touch-rewrites", "NoResurrectionAfterDelete"},
		{"rotate-racy", "NoResurrectionAfterRotate"},
		{"serve-expired", "ExpiryIdle"},
		{"revive-expired", "ExpiryIdle"},
		{"serve-expired", "ExpiryDeadline"},
		{"touch-unclamped", "ExpiryDeadline"},
		{"expires-only", "ExpiryDeadline"},
		{"touch-ignored", "ExpiryExtended"},
		{"set-deadline-ignored", "SetDeadline"},
		{"set-deadline-create-only", "SetDeadline"},
		{"set-deadline-expires-stale", "SetDeadline"},
		{"reset-deadline", "SetDeadline"},
		{"touch-unclamped", "SetDeadline"},
		{"merge-no-renew", "ExpiryExtended"},
		{"audience-dropped", "Audience"},
		{"audience-overwritten", "Audience"},
		{"no-confirmer", "NewSession"},
		{"never-new", "NewSession"},
		{"new-uncapped", "NewSession"},
		{"confirm-ignored", "NewSession"},
		{"rotate-confirms", "NewSession"},
		{"no-confirmer", "Confirm"},
		{"confirm-ignored", "Confirm"},
		{"confirm-creates", "Confirm"},
		{"confirm-rewrites", "Confirm"},
		{"count-all-confirmed", "Counts"},
		{"new-uncapped", "NewSessionExpires"},
		{"touch-extends-new", "NewSessionExpires"},
		{"no-confirmer", "NewSessionExpires"},
		{"index-by-text", "Indexer/JSONValue"},
		{"index-ignores-audience", "Indexer/Audience"},
		{"index-total-only", "Indexer/Audience"},
	}
	for _, m := range mutants {
		name := m.bug + "/" + m.subtest
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			child, subtest := "TestMutantChild", m.subtest
			if rest, ok := strings.CutPrefix(subtest, "Indexer/"); ok {
				child, subtest = "TestMutantIndexerChild", rest
			}
			run := "^" + child + "$"
			if subtest != "" {
				run += "/^" + subtest + "$"
			}
			cmd := exec.Command(os.Args[0], "-test.run="+run, "-test.count=1", "-test.timeout=60s")
			cmd.Env = append(os.Environ(), mutantEnv+"="+m.bug)
			out, err := cmd.CombinedOutput()
			if subtest == "" {
				if err != nil {
					t.Fatalf("the kit failed a correct store: %v\n%s", err, out)
				}
				return
			}
			if err == nil {
				t.Fatalf("the kit passed a store with bug %q; subtest %s should have failed it\n%s", m.bug, m.subtest, out)
			}
			if !strings.Contains(string(out), "--- FAIL: "+child+"/"+subtest) {
				t.Fatalf("bug %q: subtest %s did not fail (the child failed otherwise)\n%s", m.bug, m.subtest, out)
			}
			if strings.Contains(string(out), "panic:") {
				t.Fatalf("bug %q: the kit panicked instead of failing\n%s", m.bug, out)
			}
		})
	}
}
