package testenv

import (
	"database/sql"
	"fmt"
	"testing"

	_ "github.com/go-sql-driver/mysql" // the driver the DSNs below are for
)

// Databases are one test's own meta and shard databases on the local MariaDB.
type Databases struct {
	Meta   string
	Shards []string
}

// DSN is the DSN of database name.
func DSN(name string) string {
	return fmt.Sprintf("root@tcp(%s)/%s?parseTime=true", MySQLServer(), name)
}

// MetaDSN and ShardDSNs are the DSNs to configure the system with.
func (d Databases) MetaDSN() string { return DSN(d.Meta) }

// ShardDSNs returns the shard DSNs in order.
func (d Databases) ShardDSNs() []string {
	out := make([]string, len(d.Shards))
	for i, s := range d.Shards {
		out[i] = DSN(s)
	}
	return out
}

// NewDatabases names fresh databases (created by migrate) and drops them when the
// test ends.
func NewDatabases(t testing.TB, shards int) Databases {
	t.Helper()
	Require(t, MySQLServer())
	base := Name("fs_")
	d := Databases{Meta: base + "_meta"}
	for i := 0; i < shards; i++ {
		d.Shards = append(d.Shards, fmt.Sprintf("%s_s%d", base, i))
	}
	t.Cleanup(func() {
		db, err := sql.Open("mysql", DSN(""))
		if err != nil {
			return
		}
		defer db.Close()
		for _, name := range append([]string{d.Meta}, d.Shards...) {
			db.Exec("DROP DATABASE IF EXISTS `" + name + "`")
		}
	})
	return d
}
