package lab

// raceConfig is what Options.NoPark and Options.NoTentative add to a host
// configuration's section ("tunnel" or "probe"): nothing by default.
func (l *Lab) raceConfig(section string) string {
	switch {
	case section == "tunnel" && l.opts.NoPark:
		return "park_hold = \"0\"\n"
	case section == "probe" && l.opts.NoTentative:
		return "tentative = false\n"
	}
	return ""
}
