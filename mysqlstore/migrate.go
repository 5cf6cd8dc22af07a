package mysqlstore

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"
	"log/slog"

	"github.com/go-sql-driver/mysql"
	"github.com/pressly/goose/v3"
)

//go:embed migrations
var migrations embed.FS

// Migrate creates any missing database named in cfg and brings the meta database
// and every shard to the newest schema. It is idempotent.
func Migrate(ctx context.Context, cfg Config, log *slog.Logger) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	if err := migrateOne(ctx, cfg.MetaDSN, "meta", log); err != nil {
		return err
	}
	for _, dsn := range cfg.ShardDSNs {
		if err := migrateOne(ctx, dsn, "shard", log); err != nil {
			return err
		}
	}
	return nil
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
