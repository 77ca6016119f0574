package file

import (
	"os"
	"time"
)

// tempPrefix starts the name of every file a write creates before renaming
// it into place. A leftover one is the trace of a crash mid-write; the
// sweeper removes it once it is older than Options.TempMaxAge.
const tempPrefix = ".tmp-"

// writeAtomic replaces p.file with data so that at every instant, crash or
// not, the path holds either the old file whole or the new one whole:
// write a temporary file in the same folder (0600, as os.CreateTemp makes
// it), fsync it, rename it over the old one, fsync the folder so the
// rename itself survives a power loss.
//
// The file's modification time is set to expires: the sweeper reads it
// from the folder listing and opens only the files that have expired.
func writeAtomic(p paths, data []byte, expires time.Time) (err error) {
	f, err := os.CreateTemp(p.dir, tempPrefix+"*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(tmp)
		}
	}()
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp, p.file); err != nil {
		return err
	}
	// Only a hint: if it fails, or a crash comes first, the file keeps the
	// time of the write and the sweeper opens it to find out. (Set after
	// the rename, so that a leftover temporary file always carries the
	// time it was written, which the sweeper ages it by.)
	_ = os.Chtimes(p.file, expires, expires)
	return syncDir(p.dir)
}

// syncDir makes the entries of dir (a created, renamed or removed file)
// durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
