package bench

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/callreport/callreport/query"
)

// targetList is the list phase's load target: the first page of 50 of an
// organization's calls, newest first, as a dashboard opens it.
const targetList = "GET calls list, page of 50"

// exportReports is how many reports the export phase reads.
const exportReports = 100_000

// listTarget asks for the first page of the calls of the organizations of
// calls, with their keys (fetchReports set them).
func listTarget(qbase string, calls []reportRef) loadTarget {
	var refs []reportRef
	seen := map[string]bool{}
	for _, c := range calls {
		if !seen[c.org] {
			seen[c.org] = true
			refs = append(refs, reportRef{org: c.org, key: c.key})
		}
	}
	return loadTarget{name: targetList, url: qbase + "/call-report/calls?limit=50", refs: refs, want: http.StatusOK}
}

// exportResult is what the export phase measured: an export of up to
// exportReports call reports, organization after organization, from a
// query child of its own, whose peak RSS is the export's.
type exportResult struct {
	Reports       int           `json:"reports"`
	Bytes         int64         `json:"bytes"`
	Seconds       float64       `json:"seconds"`
	ReportsPerSec float64       `json:"reports_per_sec"`
	Query         *processStats `json:"query"`
}

// export reads the call reports of the sampled organizations through GET
// /call-report/export/calls until exportReports are read (or all are).
func (r *run) export(ctx context.Context, sample *sampler) (*exportResult, error) {
	var orgs []string
	for _, c := range sample.calls {
		if !slices.Contains(orgs, c.org) {
			orgs = append(orgs, c.org)
		}
	}
	if len(orgs) == 0 {
		return nil, fmt.Errorf("export: no organization sampled")
	}
	keys := map[string]string{}
	for _, org := range orgs {
		key, _, err := query.CreateKey(ctx, r.env.pool, org, "bench export")
		if err != nil {
			return nil, fmt.Errorf("key for %s: %w", org, err)
		}
		keys[org] = key
	}
	qry, base, err := startServer(ctx, r.env, "query-export", "--mode", "query")
	if err != nil {
		return nil, err
	}
	defer qry.stop(10 * time.Second)
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	defer client.CloseIdleConnections()

	res := &exportResult{}
	start := time.Now()
	for _, org := range orgs {
		if res.Reports >= exportReports {
			break
		}
		fmt.Fprintf(r.stderr, "export: the call reports of %s\n", org)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/call-report/export/calls", nil)
		if err != nil {
			return nil, err
		}
		req.Header.Set("Authorization", "Bearer "+keys[org])
		resp, err := client.Do(req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			return nil, fmt.Errorf("export of %s: status %d", org, resp.StatusCode)
		}
		br := bufio.NewReaderSize(resp.Body, 1<<20)
		for res.Reports < exportReports {
			line, err := br.ReadSlice('\n')
			res.Bytes += int64(len(line))
			if err == bufio.ErrBufferFull {
				for err == bufio.ErrBufferFull { // a report longer than the buffer
					line, err = br.ReadSlice('\n')
					res.Bytes += int64(len(line))
				}
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				resp.Body.Close()
				return nil, fmt.Errorf("export of %s: %w", org, err)
			}
			res.Reports++
		}
		resp.Body.Close()
	}
	elapsed := time.Since(start)
	res.Seconds, res.ReportsPerSec = elapsed.Seconds(), perSecond(res.Reports, elapsed)
	st, err := qry.stopMeasured()
	if err != nil {
		return nil, err
	}
	res.Query = &st
	return res, nil
}
