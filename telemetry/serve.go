package telemetry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// MetricsServer serves /metrics over plain HTTP.
type MetricsServer struct {
	srv  *http.Server
	lis  net.Listener
	done chan error
}

// ServeMetrics listens on addr (host:port) and serves h at /metrics until
// Close; log (slog.Default when nil) gets the server's errors. The endpoint carries no secrets and no tenant content, but it
// names models and providers (and tenants when tenant labels are on), so
// keep it on loopback or a network only the scraper reaches.
func ServeMetrics(addr string, h http.Handler, log *slog.Logger) (*MetricsServer, error) {
	if log == nil {
		log = slog.Default()
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening for metrics: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", h)
	s := &MetricsServer{
		srv: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		},
		lis:  lis,
		done: make(chan error, 1),
	}
	go func() {
		err := s.srv.Serve(lis)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.done <- err
	}()
	return s, nil
}

// Addr is the address the server listens on.
func (s *MetricsServer) Addr() net.Addr { return s.lis.Addr() }

// Close stops the server, letting scrapes in progress finish for up to
// five seconds.
func (s *MetricsServer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	if serveErr := <-s.done; serveErr != nil {
		err = errors.Join(err, fmt.Errorf("serving metrics: %w", serveErr))
	}
	return err
}
