package poolschedule

import (
	"strings"
	"testing"
	"time"
)

func at(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestAt(t *testing.T) {
	// Weekdays 08:00–18:00 UTC: 10; Mondays 07:00–09:00 Europe/Berlin: 15 (it
	// overlaps the first on Monday mornings); otherwise 2.
	s, err := New(2, []Window{
		{Start: "0 8 * * 1-5", Duration: 10 * time.Hour, MinIdle: 10},
		{Start: "CRON_TZ=Europe/Berlin 0 7 * * 1", Duration: 2 * time.Hour, MinIdle: 15},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		now  string
		want int
	}{
		{"2026-12-07T07:59:59Z", 15}, // Monday 08:59 in Berlin: only the Berlin window
		{"2026-12-07T05:59:59Z", 2},  // Monday 06:59 in Berlin: none yet
		{"2026-12-07T06:00:00Z", 15}, // the Berlin window opens at its start
		{"2026-12-07T08:00:00Z", 10}, // the Berlin window closed at 09:00 Berlin; the UTC one opened
		{"2026-12-07T17:59:59Z", 10},
		{"2026-12-07T18:00:00Z", 2}, // closed at start+duration
		{"2026-12-05T12:00:00Z", 2}, // Saturday
		{"2026-12-08T07:30:00Z", 2}, // Tuesday, before 08:00 UTC
	} {
		if got := s.At(at(c.now)); got != c.want {
			t.Errorf("At(%s) = %d, want %d", c.now, got, c.want)
		}
	}
	if got := s.Max(); got != 15 {
		t.Errorf("Max = %d, want 15", got)
	}
	if !s.Windows() {
		t.Error("Windows = false")
	}
}

// A window may lower the pool: nights with none, and the base the rest of the day.
func TestWindowLowersThePool(t *testing.T) {
	s, err := New(4, []Window{{Start: "@midnight", Duration: 6 * time.Hour, MinIdle: 0}})
	if err != nil {
		t.Fatal(err)
	}
	if got := s.At(at("2026-12-05T03:00:00Z")); got != 0 {
		t.Errorf("at night: %d, want 0", got)
	}
	if got := s.At(at("2026-12-05T06:00:00Z")); got != 4 {
		t.Errorf("in the day: %d, want 4", got)
	}
}

// A window longer than its period is always open once it has started.
func TestOverlappingStarts(t *testing.T) {
	s, err := New(0, []Window{{Start: "*/5 * * * *", Duration: 10 * time.Minute, MinIdle: 3}})
	if err != nil {
		t.Fatal(err)
	}
	for m := range 60 {
		now := at("2026-12-05T10:00:00Z").Add(time.Duration(m)*time.Minute + 17*time.Second)
		if got := s.At(now); got != 3 {
			t.Fatalf("At(%s) = %d, want 3", now, got)
		}
	}
}

// Without a zone the expression is UTC, whatever the machine's local zone.
func TestUTCByDefault(t *testing.T) {
	t.Setenv("TZ", "Asia/Tokyo")
	loc, err := time.LoadLocation("Asia/Tokyo")
	if err != nil {
		t.Skipf("no zone data: %v", err)
	}
	old := time.Local
	time.Local = loc
	t.Cleanup(func() { time.Local = old })
	s, err := New(0, []Window{{Start: "0 9 * * *", Duration: time.Hour, MinIdle: 1}})
	if err != nil {
		t.Fatal(err)
	}
	// The consumers' clock gives local times: cron would read a schedule in the
	// local zone in the zone of the time it is given.
	if got := s.At(at("2026-12-05T09:30:00Z").In(loc)); got != 1 {
		t.Errorf("09:30 UTC: %d, want 1 (the window is in UTC)", got)
	}
	if got := s.At(at("2026-12-05T00:30:00Z").In(loc)); got != 0 {
		t.Errorf("09:30 in Tokyo: %d, want 0", got)
	}
}

func TestZeroAndConstant(t *testing.T) {
	var zero Schedule
	if zero.At(time.Now()) != 0 || zero.Max() != 0 || zero.Windows() {
		t.Errorf("zero schedule: At %d Max %d Windows %v", zero.At(time.Now()), zero.Max(), zero.Windows())
	}
	c := Constant(3)
	if c.At(time.Now()) != 3 || c.Max() != 3 || c.Windows() {
		t.Errorf("Constant(3): At %d Max %d", c.At(time.Now()), c.Max())
	}
}

func TestNewRefuses(t *testing.T) {
	for _, c := range []struct {
		name   string
		base   int
		w      Window
		substr string
	}{
		{"bad cron", 0, Window{Start: "0 8 * *", Duration: time.Hour}, "cron expression"},
		{"seconds field", 0, Window{Start: "0 0 8 * * *", Duration: time.Hour}, "cron expression"},
		{"never fires", 0, Window{Start: "0 0 30 2 *", Duration: time.Hour}, "never fires"},
		{"bad zone", 0, Window{Start: "CRON_TZ=Mars/Olympus 0 8 * * *", Duration: time.Hour}, "cron expression"},
		{"no duration", 0, Window{Start: "0 8 * * *"}, "duration: must be positive"},
		{"negative min_idle", 0, Window{Start: "0 8 * * *", Duration: time.Hour, MinIdle: -1}, "min_idle"},
		{"negative base", -1, Window{Start: "0 8 * * *", Duration: time.Hour}, "min_idle"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := New(c.base, []Window{c.w})
			if err == nil || !strings.Contains(err.Error(), c.substr) {
				t.Fatalf("New: %v, want an error with %q", err, c.substr)
			}
		})
	}
}

// Check names every field that is wrong, not only the first.
func TestCheckNamesEachField(t *testing.T) {
	var fields []string
	for _, p := range (Window{Start: "0 8 * *", MinIdle: -2}).Check() {
		fields = append(fields, p.Field)
	}
	if got := strings.Join(fields, ","); got != "start,duration,min_idle" {
		t.Errorf("Check named %q, want start,duration,min_idle", got)
	}
	if p := (Window{Start: "@daily", Duration: time.Hour}).Check(); len(p) != 0 {
		t.Errorf("a good window: %v", p)
	}
}
