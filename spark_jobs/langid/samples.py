"""Hand-written paragraphs in known languages, for checking language ID on real text offline.

Written for this project (not copied from anywhere), so tests and the benchmark can feed the real fastText model
natural prose in several languages without a download. Keys are lid.176 labels.
"""

from __future__ import annotations

SAMPLE_PARAGRAPHS: dict[str, tuple[str, ...]] = {
    "fr": (
        "Chaque matin, ma voisine descend l'escalier avec son vieux chien et s'arrête devant la boulangerie du coin. "
        "Elle achète toujours une baguette bien cuite et deux croissants, puis elle discute quelques minutes avec la "
        "boulangère des nouvelles du quartier. Personne ne sait vraiment depuis combien d'années dure ce petit rituel, "
        "mais tout le monde dans la rue le connaît et sourit en la voyant passer.",
        "Le train régional avait encore une heure de retard, et les voyageurs fatigués attendaient sur le quai sans "
        "trop se plaindre. Un étudiant révisait ses cours de chimie, une mère racontait une histoire à ses enfants, "
        "et un homme âgé regardait les nuages en silence. Quand le train est enfin arrivé, chacun a trouvé une place "
        "près de la fenêtre pour profiter du paysage de la campagne.",
        "Pour réussir une bonne soupe de légumes, il faut prendre son temps. On coupe les carottes, les poireaux et "
        "les pommes de terre en petits morceaux, on les fait revenir dans un peu de beurre, puis on ajoute de l'eau "
        "et une pincée de sel. Après une demi-heure de cuisson douce, la maison entière sent bon et les enfants "
        "demandent quand on va enfin passer à table.",
    ),
    "de": (
        "Am Wochenende fahren wir oft mit dem Fahrrad an den See, der etwa zwanzig Kilometer von unserer Stadt "
        "entfernt liegt. Unterwegs halten wir an einem kleinen Hof, wo man frische Erdbeeren und selbstgemachten "
        "Apfelsaft kaufen kann. Am Ufer breiten wir eine Decke aus, lesen ein Buch und springen ins kalte Wasser, "
        "wenn die Sonne am Nachmittag besonders heiß scheint.",
        "Die neue Bibliothek im Stadtzentrum hat große Fenster, bequeme Sessel und einen ruhigen Lesesaal im obersten "
        "Stockwerk. Viele Schüler kommen nach dem Unterricht hierher, um ihre Hausaufgaben zu machen oder sich auf "
        "Prüfungen vorzubereiten. Am Abend finden manchmal Vorträge über Geschichte, Kunst und Naturwissenschaften "
        "statt, zu denen jeder kostenlos eingeladen ist.",
        "Mein Großvater hat sein ganzes Leben lang Uhren repariert. In seiner kleinen Werkstatt roch es nach Öl und "
        "altem Holz, und auf dem Tisch lagen winzige Zahnräder, Federn und Schrauben. Er erklärte mir geduldig, wie "
        "jedes Teil mit den anderen zusammenarbeitet, und sagte immer, dass man für gute Arbeit vor allem Ruhe und "
        "ein scharfes Auge braucht.",
    ),
    "es": (
        "Cuando llega el verano, toda la familia se reúne en la casa de los abuelos, cerca del mar. Por las mañanas "
        "los niños juegan en la playa y construyen castillos de arena, mientras los adultos preparan la comida y "
        "conversan bajo la sombra de los árboles. Por la noche cenamos juntos en el patio, contamos historias "
        "antiguas y escuchamos música hasta muy tarde.",
        "El mercado del barrio abre todos los sábados desde muy temprano. Los vendedores colocan con cuidado las "
        "frutas, las verduras y los quesos sobre mesas de madera, y los vecinos caminan despacio entre los puestos "
        "buscando los mejores precios. Siempre hay alguien que ofrece una muestra de aceitunas o de pan recién "
        "horneado, y es difícil volver a casa con las manos vacías.",
        "Aprender a tocar la guitarra requiere paciencia y mucha práctica diaria. Al principio los dedos duelen y los "
        "acordes suenan torpes, pero poco a poco las canciones empiezan a salir con naturalidad. Mi profesor me "
        "recomendó practicar media hora cada día en lugar de tres horas el domingo, y tenía toda la razón.",
    ),
    "it": (
        "Ogni domenica mia nonna preparava la pasta fatta in casa per tutta la famiglia. Impastava la farina con le "
        "uova su un grande tavolo di legno, poi stendeva la sfoglia con il mattarello fino a renderla sottilissima. "
        "Noi bambini la aiutavamo a tagliare le tagliatelle, e il profumo del sugo che cuoceva lentamente riempiva "
        "la cucina per tutta la mattina.",
        "La piccola piazza del paese si anima soprattutto la sera, quando il caldo della giornata comincia a "
        "diminuire. Gli anziani siedono sulle panchine e parlano di politica e di calcio, i ragazzi si ritrovano "
        "davanti alla gelateria e le famiglie passeggiano lentamente sotto i portici. Da lontano si sentono le "
        "campane della chiesa che segnano l'ora.",
        "Il viaggio in treno da Milano a Napoli attraversa paesaggi molto diversi tra loro. Si passa dalle pianure "
        "coltivate del nord alle colline della Toscana, con i loro cipressi e le vigne, fino alle montagne e poi al "
        "mare del sud. Guardare dal finestrino è il modo migliore per capire quanto sia varia questa terra.",
    ),
    "pt": (
        "Na pequena cidade onde cresci, todos se conheciam pelo nome. O padeiro sabia exatamente que pão cada família "
        "preferia, e a professora da escola primária lembrava-se de todos os seus antigos alunos. Aos domingos, "
        "depois da missa, as pessoas ficavam conversando na praça durante horas, enquanto as crianças corriam em "
        "volta do chafariz.",
        "Quando começou a chover, decidimos abrigar-nos num café antigo perto do rio. As paredes estavam cobertas de "
        "fotografias a preto e branco, e o empregado trouxe-nos dois cafés e um prato de bolos de nata ainda "
        "quentes. Ficámos ali a ver a chuva cair sobre a rua de pedra, sem pressa nenhuma de voltar para casa.",
        "Plantar uma horta no quintal é mais fácil do que parece. Basta escolher um lugar com bastante sol, preparar "
        "bem a terra e regar as plantas todos os dias ao fim da tarde. Em poucas semanas já é possível colher "
        "alfaces, tomates e ervas aromáticas, e a comida feita com os próprios legumes tem um sabor especial.",
    ),
    "nl": (
        "In onze straat staan de huizen dicht tegen elkaar aan, en bijna iedereen heeft een fiets voor de deur. "
        "Elke ochtend fietsen de kinderen samen naar school, ook als het regent of hard waait. Na schooltijd spelen "
        "ze op het pleintje aan het einde van de straat, terwijl de ouders op een bankje koffie drinken en over het "
        "weer praten.",
        "Het museum in het oude stadhuis heeft een prachtige verzameling schilderijen uit de zeventiende eeuw. Je ziet "
        "er portretten van rijke kooplieden, rustige landschappen met molens en drukke taferelen op de markt. Op "
        "woensdagmiddag geeft een gids een rondleiding voor kinderen, waarbij ze zelf mogen tekenen wat ze het "
        "mooiste vinden.",
        "Toen we vorig jaar verhuisden, moesten we veel oude spullen opruimen. In de kelder vonden we dozen vol "
        "brieven, foto's en speelgoed van vroeger. We hebben een hele middag op de grond gezeten om alles te "
        "bekijken, en uiteindelijk hebben we de mooiste herinneringen bewaard in één grote kist op zolder.",
    ),
    "ru": (
        "Каждое лето мы уезжали на дачу к бабушке, которая жила в небольшой деревне у реки. Утром мы ходили в лес за "
        "грибами и ягодами, а днём купались и ловили рыбу с деревянного мостика. Вечером вся семья собиралась за "
        "большим столом на веранде, пила чай с вареньем и слушала бабушкины рассказы о её молодости.",
        "Новая библиотека в центре города быстро стала любимым местом студентов. Там удобные кресла, большие окна и "
        "тихие залы, где можно спокойно заниматься до позднего вечера. По выходным в библиотеке проходят встречи с "
        "писателями и лекции по истории, на которые приходят люди самых разных возрастов.",
        "Чтобы испечь хороший хлеб, нужно немного муки, воды, соли и дрожжей, но главное — терпение. Тесто должно "
        "подняться в тёплом месте, а потом его нужно аккуратно сформировать и поставить в горячую духовку. Когда по "
        "квартире разносится запах свежего хлеба, все домашние сами приходят на кухню.",
    ),
    "zh": (
        "每天早上，我都会在公园里散步半个小时。公园里有很多老人在打太极拳，也有年轻人在跑步，还有人在湖边安静地看书。"
        "春天的时候，湖边的柳树发出新芽，花坛里开满了各种颜色的花，空气里都是青草的味道。散步以后，我会去附近的小店"
        "吃一碗热豆浆和两根油条，然后开始一天的工作。",
        "我的爷爷年轻的时候是一名木匠，他做的桌子和椅子又结实又漂亮。小时候我常常坐在他的工作台旁边，看他一点一点地"
        "把木头锯开、刨平，再用钉子和胶水拼在一起。他总是告诉我，做任何事情都要认真仔细，不能着急，这句话我一直记在"
        "心里。",
        "这座城市的地铁非常方便，几乎可以到达每一个重要的地方。上下班的时候车厢里人很多，但是大家都排队上车，秩序很好。"
        "很多人在地铁上看手机、听音乐，也有人利用这段时间读书学习。周末的时候，乘坐地铁去郊外爬山已经成为很多家庭的"
        "习惯。",
    ),
    "ja": (
        "毎朝、私は駅までの道を歩いて通勤しています。途中には小さなパン屋があり、焼きたてのパンのいい香りがいつも外まで"
        "漂っています。時々そこでメロンパンを買って、電車の中で食べるのが私のささやかな楽しみです。季節によって道端の"
        "花が変わるので、同じ道でも毎日少しずつ違う景色を楽しむことができます。",
        "週末になると、家族で近くの山へハイキングに出かけることがよくあります。山道は少し急ですが、頂上からは町全体と"
        "遠くの海まで見渡すことができます。お昼には母が作ってくれたおにぎりを食べて、しばらく休んでから、ゆっくりと"
        "山を下りて温泉に入るのがいつもの流れです。",
        "祖母の家の庭には大きな柿の木があり、秋になるとたくさんの実がなります。子供の頃は、いとこたちと一緒に梯子に"
        "登って柿を取り、縁側に並べて干し柿を作りました。冬になって甘くなった干し柿を食べると、今でもあの頃の楽しい"
        "思い出がよみがえってきます。",
    ),
}
