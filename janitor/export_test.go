package janitor

// TestHooks are the janitor's test seams, for the tests in package janitor_test.
type TestHooks struct {
	// ActiveChanged is called when the janitor starts acting and after it stopped.
	ActiveChanged func(active bool)
	// BeforeFlushRemove runs after a flush chose its runners, before it removes them.
	BeforeFlushRemove func()
}

// SetTestHooks installs hooks in options before New.
func SetTestHooks(o *Options, h TestHooks) {
	o.hooks = testHooks{activeChanged: h.ActiveChanged, beforeFlushRemove: h.BeforeFlushRemove}
}
