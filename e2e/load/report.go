package load

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// ReportEnv names the environment variable holding the file that Report
// appends rows to (one JSON object per line), so that scenarios run by
// several test binaries end up in one table (see PrintTable and
// e2e/load/cmd/e2e-table).
const ReportEnv = "STRAIT_E2E_REPORT"

// Row is one scenario's line in the e2e table. Durations are nanoseconds in
// JSON; a negative duration means "not measured".
type Row struct {
	Scenario string        `json:"scenario"`
	Sent     int           `json:"sent"`
	Failed   int           `json:"failed"`
	Reroute  time.Duration `json:"reroute"`
	Return   time.Duration `json:"return"`
	P50      time.Duration `json:"p50"`
	P99      time.Duration `json:"p99"`
	Pass     bool          `json:"pass"`
	// Excused, for scenarios that excuse failures past the point of retry,
	// is how many they excused and the cap they were held to.
	Excused *Excused `json:"excused,omitempty"`
	Note    string   `json:"note,omitempty"`
}

// Excused counts the failures a scenario excused (requests whose key
// reached an application before the fault took their answer) and the cap
// it held them to.
type Excused struct {
	N   int `json:"n"`
	Cap int `json:"cap"`
}

// SetExcused records n excused failures under cap.
func (r *Row) SetExcused(n, cap int) { r.Excused = &Excused{N: n, Cap: cap} }

func fmtExcused(e *Excused) string {
	if e == nil {
		return "-"
	}
	return fmt.Sprintf("%d/%d", e.N, e.Cap)
}

// NewRow starts a row from a history's summary; Reroute and Return are unset
// (negative) until the caller fills them.
func NewRow(scenario string, h History) Row {
	s := h.Summary()
	return Row{Scenario: scenario, Sent: s.Sent, Failed: s.Failed, P50: s.P50, P99: s.P99, Reroute: -1, Return: -1}
}

// TB is the part of testing.TB that Report uses.
type TB interface {
	Helper()
	Logf(format string, args ...any)
	Errorf(format string, args ...any)
	Failed() bool
}

// Report logs row and, when ReportEnv names a file, appends it there. Pass
// is taken from the test's state when Report is called: call it last.
func Report(t TB, row Row) {
	t.Helper()
	row.Pass = !t.Failed()
	t.Logf("e2e row: %s", formatRow(row))
	path := os.Getenv(ReportEnv)
	if path == "" {
		return
	}
	b, err := json.Marshal(row)
	if err != nil {
		t.Errorf("load: report: %v", err)
		return
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
	if err != nil {
		t.Errorf("load: report: %v", err)
		return
	}
	defer f.Close()
	if _, err := f.Write(append(b, '\n')); err != nil {
		t.Errorf("load: report: %v", err)
	}
}

func formatRow(r Row) string {
	return strings.Join([]string{r.Scenario, fmt.Sprint(r.Sent), fmt.Sprint(r.Failed), fmtExcused(r.Excused), fmtDur(r.Reroute), fmtDur(r.Return),
		fmtDur(r.P50), fmtDur(r.P99), passWord(r.Pass), r.Note}, " | ")
}

func fmtDur(d time.Duration) string {
	switch {
	case d < 0:
		return "-"
	case d >= time.Second:
		return d.Round(time.Millisecond).String()
	default:
		return d.Round(10 * time.Microsecond).String()
	}
}

func passWord(ok bool) string {
	if ok {
		return "pass"
	}
	return "FAIL"
}

// ReadRows reads the rows of a report file.
func ReadRows(r io.Reader) ([]Row, error) {
	var rows []Row
	dec := json.NewDecoder(r)
	for dec.More() {
		var row Row
		if err := dec.Decode(&row); err != nil {
			return rows, fmt.Errorf("load: report row: %w", err)
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// PrintTable writes rows as an aligned table, sorted by scenario name.
func PrintTable(w io.Writer, rows []Row) error {
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].Scenario < rows[j].Scenario })
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tsent\tfailed\texcused/cap\treroute\treturn\tp50\tp99\tresult\tnote")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Scenario, r.Sent, r.Failed, fmtExcused(r.Excused),
			fmtDur(r.Reroute), fmtDur(r.Return), fmtDur(r.P50), fmtDur(r.P99), passWord(r.Pass), r.Note)
	}
	return tw.Flush()
}
