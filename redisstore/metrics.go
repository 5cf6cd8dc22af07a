package redisstore

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/flashsale/flashsale"
)

// counter is a go-redis hook that counts round trips and commands by the
// stage of the purchase path they served (flashsale.WithStage): what `flashsale
// bench` divides by admissions and orders.
type counter struct {
	trips, commands *prometheus.CounterVec
}

func newCounter(reg prometheus.Registerer) *counter {
	c := &counter{
		trips: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flashsale_redis_round_trips_total",
			Help: "Round trips to Redis (a command, or a pipeline of them), by the stage of the purchase path they served."}, []string{"stage"}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "flashsale_redis_commands_total",
			Help: "Commands sent to Redis (each script call counts one), by the stage of the purchase path they served."}, []string{"stage"}),
	}
	for _, s := range []string{"admission", "worker", "other"} {
		c.trips.WithLabelValues(s)
		c.commands.WithLabelValues(s)
	}
	reg.MustRegister(c.trips, c.commands)
	return c
}

func (c *counter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *counter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		s := flashsale.StageOf(ctx)
		c.trips.WithLabelValues(s).Inc()
		c.commands.WithLabelValues(s).Inc()
		return next(ctx, cmd)
	}
}

func (c *counter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		s := flashsale.StageOf(ctx)
		c.trips.WithLabelValues(s).Inc()
		c.commands.WithLabelValues(s).Add(float64(len(cmds)))
		return next(ctx, cmds)
	}
}

var _ redis.Hook = (*counter)(nil)
