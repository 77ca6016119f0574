package caddymodule

import "syscall"

// networkFilesystems maps statfs(2) magic numbers of filesystems that
// several hosts mount to their names.
var networkFilesystems = map[int64]string{
	0x6969:     "nfs",
	0x517b:     "smb",
	0xff534d42: "cifs",
	0xfe534d42: "smb2",
	0x65735546: "fuse",
	0x00c36400: "ceph",
	0x01161970: "gfs2",
	0x7461636f: "ocfs2",
	0x5346414f: "afs",
	0x01021997: "9p",
	0x47504653: "gpfs",
	0x0bd00bd0: "lustre",
}

// networkFilesystem returns the name of the network filesystem dir is on,
// or "" for a local one (or when it cannot tell).
func networkFilesystem(dir string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return ""
	}
	return networkFilesystems[int64(st.Type)&0xffffffff]
}
