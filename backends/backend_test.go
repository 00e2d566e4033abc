package backends

import (
	"errors"
	"testing"
)

func TestValidateSpec(t *testing.T) {
	tests := []struct {
		name string
		spec InstanceSpec
		ok   bool
	}{
		{"good", InstanceSpec{Name: "spawner-small-42-0", Flavor: "small"}, true},
		{"upper case", InstanceSpec{Name: "Spawner-1", Flavor: "small"}, false},
		{"leading digit", InstanceSpec{Name: "1abc", Flavor: "small"}, false},
		{"trailing hyphen", InstanceSpec{Name: "abc-", Flavor: "small"}, false},
		{"too long", InstanceSpec{Name: "a" + string(make([]byte, 63)), Flavor: "small"}, false},
		{"other flavor", InstanceSpec{Name: "abc", Flavor: "large"}, false},
		{"empty", InstanceSpec{Flavor: "small"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateSpec("small", tt.spec)
			if tt.ok && err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if !tt.ok && !errors.Is(err, ErrBadSpec) {
				t.Fatalf("want ErrBadSpec, got %v", err)
			}
		})
	}
}
