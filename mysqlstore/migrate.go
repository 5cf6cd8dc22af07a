package mysqlstore

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"
	"strings"

	"github.com/go-sql-driver/mysql"
	"github.com/pressly/goose/v3"
)

//go:embed migrations
var migrations embed.FS

// Migrate creates any missing database named in cfg, brings the meta database
// and every shard to the newest schema, and records the shard list or checks
// it against the record (see shardlist.go). It is idempotent.
//
// A list that differs from the record is refused before any shard is
// touched (no database is created, no schema changed) with an error wrapping
// ErrShardList. With nothing recorded, Migrate writes each shard's identity and
// records the list, unless the orders already on the shards show it to be
// another list than theirs (also ErrShardList, also before any shard is
// touched).
func Migrate(ctx context.Context, cfg Config, log *slog.Logger) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	if err := migrateOne(ctx, cfg.MetaDSN, "meta", log); err != nil {
		return err
	}
	set, closeSet, err := openShardSet(cfg)
	if err != nil {
		return err
	}
	defer closeSet()
	rec, err := set.recorded(ctx)
	if err != nil {
		return err
	}
	if err := set.check(ctx, rec); err != nil {
		return err
	}
	for _, dsn := range cfg.ShardDSNs {
		if err := migrateOne(ctx, dsn, "shard", log); err != nil {
			return err
		}
	}
	if rec != nil {
		log.Info("the shard list is the recorded one", "shards", strings.Join(set.labels, ", "))
		return nil
	}
	ids, err := set.ensureIdentities(ctx)
	if err != nil {
		return err
	}
	if err := set.record(ctx, ids); err != nil {
		return err
	}
	log.Info("recorded the shard list", "shards", strings.Join(set.labels, ", "))
	return nil
}

// openShardSet opens small pools to the meta database and every shard of cfg
// (they connect lazily: a shard database need not exist yet).
func openShardSet(cfg Config) (shardSet, func(), error) {
	var dbs []*sql.DB
	closeAll := func() {
		for _, db := range dbs {
			db.Close()
		}
	}
	var set shardSet
	for i, dsn := range append([]string{cfg.MetaDSN}, cfg.ShardDSNs...) {
		db, dcfg, err := openDB(dsn, 2)
		if err != nil {
			closeAll()
			return shardSet{}, nil, err
		}
		dbs = append(dbs, db)
		if i == 0 {
			set.meta = db
			continue
		}
		set.shards = append(set.shards, db)
		set.labels = append(set.labels, shardLabel(dcfg))
	}
	return set, closeAll, nil
}

func migrateOne(ctx context.Context, dsn, kind string, log *slog.Logger) error {
	cfg, err := parseDSN(dsn)
	if err != nil {
		return err
	}
	if err := createDatabase(ctx, cfg); err != nil {
		return err
	}
	db, _, err := openDB(dsn, 2)
	if err != nil {
		return err
	}
	defer db.Close()
	sub, err := fs.Sub(migrations, "migrations/"+kind)
	if err != nil {
		return err
	}
	p, err := goose.NewProvider(goose.DialectMySQL, db, sub)
	if err != nil {
		return fmt.Errorf("mysqlstore: migrations: %w", err)
	}
	results, err := p.Up(ctx)
	if err != nil {
		return fmt.Errorf("mysqlstore: migrate %s: %w", cfg.DBName, err)
	}
	for _, r := range results {
		log.Info("migrated", "database", cfg.DBName, "version", r.Source.Version, "took", r.Duration)
	}
	return nil
}

// createDatabase creates cfg.DBName if it does not exist, connecting without a
// default database.
func createDatabase(ctx context.Context, cfg *mysql.Config) error {
	if cfg.DBName == "" {
		return fmt.Errorf("mysqlstore: DSN names no database")
	}
	server := cfg.Clone()
	server.DBName = ""
	connector, err := mysql.NewConnector(server)
	if err != nil {
		return err
	}
	db := sql.OpenDB(connector)
	defer db.Close()
	_, err = db.ExecContext(ctx, "CREATE DATABASE IF NOT EXISTS `"+cfg.DBName+"` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
	if err != nil {
		return fmt.Errorf("mysqlstore: create database %s: %w", cfg.DBName, err)
	}
	return nil
}
