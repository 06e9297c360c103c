#!/usr/bin/perl
# 94-man.t - the man pages nvsrelayd(8), nvsrelay(1) and nvsrelayd.conf(5),
# made from packaging/man/*.in as `make man` makes them: groff formats them
# without a warning, their NAME line is one whatis(1) can index, and they
# carry the Makefile's version.  What they must mention (every key, every
# option) is checked by optscan.t.
use strict;
use warnings;
use FindBin;
use lib "$FindBin::Bin/../lib";
use File::Temp ();
use Test::More;
use NvsTest;

my $root = $NvsTest::ROOT;
my $tmp  = File::Temp::tempdir('nvs94.XXXXXX', DIR => '/tmp', CLEANUP => 1);
my ($version) = NvsTest::slurp("$root/Makefile") =~ /^VERSION\s*:=\s*(\S+)/m;

sub which {
	my ($prog) = @_;
	for (split /:/, $ENV{PATH} || '/usr/bin:/bin') { return "$_/$prog" if -x "$_/$prog" }
	return undef;
}

my %name = ('nvsrelayd.8' => 'nvsrelayd', 'nvsrelay.1' => 'nvsrelay', 'nvsrelayd.conf.5' => 'nvsrelayd.conf');
for my $page (sort keys %name) {
	my $out = "$tmp/$page";
	system("perl '$root/packaging/man/manpage.pl' '$version' '$root/conf/nvsrelayd.conf' "
		. "< '$root/packaging/man/$page.in' > '$out'") == 0 or BAIL_OUT("manpage.pl failed for $page");
	my $man = NvsTest::slurp($out);
	unlike($man, qr/\@[A-Z]+\@/, "$page: every placeholder filled in");
	my ($sec) = $page =~ /\.(\d)$/;
	my $title = uc $name{$page};
	like($man, qr/^\.TH \Q$title\E $sec "" "nvsrelayd \Q$version\E"/m, "$page: .TH $title $sec, version $version");
	SKIP: {
		my $groff = which('groff');
		skip 'groff not installed', 1 unless $groff;
		my $err = `'$groff' -man -ww -z '$out' 2>&1`;
		is($err, '', "$page: groff -ww formats it without warnings");
	}
	SKIP: {
		my ($lexgrog) = grep { -x } ('/usr/bin/lexgrog', which('lexgrog') // ());
		skip 'lexgrog (man-db) not installed', 1 unless $lexgrog;
		my $w = `'$lexgrog' -w '$out' 2>&1`;
		like($w, qr/:\s*"\Q$name{$page}\E - \S/, "$page: whatis entry") or diag($w);
	}
}

done_testing();
